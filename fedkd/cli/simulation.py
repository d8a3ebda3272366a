"""Running simulations from the command line: the product's apps, plus the fault harness when asked for.

This is the one place that installs ``fedkd.faults``: when a run sets ``fault.*``
keys, the honest ClientApp's handlers are wrapped by the hostile one and a
crash observer is added; the apps themselves never know.
"""
from __future__ import annotations

import functools
import sys
from pathlib import Path

from fedkd.config import Config
from fedkd.observers import FanOut, RoundObserver
from fedkd.report.refusals import RefusalLog, never_contributed
from fedkd.run_records import read_rounds, write_json_atomic


def check_out(out: Path, cfg: Config) -> None:
    """Refuse an occupied output folder before Ray starts (the server checks again)."""
    from server.rounds import check_out_dir, check_resume

    check_out_dir(out, cfg.server.resume)
    if cfg.server.resume:
        check_resume(out, cfg)  # the whole checkpoint, before Ray starts


class ConsoleRefusals(RoundObserver):
    """Prints each client's refusal reason on the console, the first time and whenever it changes."""

    def __init__(self, say=None):
        self.log = RefusalLog()
        self.say = say or (lambda line: print(f"fedkd: {line}", file=sys.stderr, flush=True))
        self.records: list = []

    def on_round(self, record) -> None:
        self.records.append(record)
        for line in self.log.lines(record):
            self.say(line)

    def finish(self, summary: dict) -> None:
        """The final lines: how many nodes never contributed, and why the run failed."""
        if self.log.last:
            line = never_contributed(self.records, int(summary.get("num_clients", 0)))
            if line:
                self.say(line)
        if summary.get("failure"):
            self.say(f"the run FAILED: {summary['failure']}")


def run_simulation(cfg: Config, out: Path | str, *, progress: bool = True, verbose: bool = False) -> dict:
    """One simulated run in ``out``; returns its summary (with the honest-client numbers of a robustness run).

    Refusals are printed as they happen; a failed run (``summary['failure']``) is said so on the console,
    and the caller exits non-zero on it.
    """
    console = ConsoleRefusals()
    summary = _run_simulation(cfg, Path(out), progress, verbose, console)
    console.finish(summary)
    return summary


def _run_simulation(cfg: Config, out: Path, progress: bool, verbose: bool, console: ConsoleRefusals) -> dict:
    from server.simulate import simulate

    check_out(out, cfg)
    if not cfg.faults.wanted:
        return simulate(cfg, str(out), progress=progress, verbose=verbose, observer=console)
    from clients import app as honest
    from clients.node import RunFolderStorage
    from fedkd.faults.clientapp import hostile_client_app
    from fedkd.faults.crash import StopAfterRound
    from fedkd.faults.records import honest_summary

    from fedkd.faults.plan import FaultPlan

    plan = FaultPlan.from_settings(cfg.faults)
    train = functools.partial(honest.train, storage=RunFolderStorage(Path(out).resolve() / "nodes"), simulated=True)
    client_app = hostile_client_app(plan, train, honest.identify, cfg.wire)
    observer = FanOut(console, StopAfterRound(plan.stop_after_round) if plan.stop_after_round else None)
    summary = simulate(cfg, str(out), progress=progress, verbose=verbose, client_app=client_app,
                       observer=observer)
    rounds = read_rounds(out)
    extra = honest_summary(plan, rounds)
    if extra:
        summary = {**summary, "robustness": extra}
        write_json_atomic(Path(out) / "summary.json", summary)
    return summary

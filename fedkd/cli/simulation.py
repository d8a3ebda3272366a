"""Running simulations from the command line: the product's apps, plus the fault harness when asked for.

This is the one place that installs ``fedkd.faults``: when a run sets ``fault.*``
keys, the honest ClientApp's handlers are wrapped by the hostile one and a
crash observer is added; the apps themselves never know.
"""
from __future__ import annotations

import functools
from pathlib import Path

from fedkd.config import Config
from fedkd.run_records import read_rounds, write_json_atomic


def check_out(out: Path, cfg: Config) -> None:
    """Refuse an occupied output folder before Ray starts (the server checks again)."""
    from server.rounds import check_out_dir

    check_out_dir(out, cfg.server.resume)


def run_simulation(cfg: Config, out: Path, *, progress: bool = True, verbose: bool = False) -> dict:
    """One simulated run in ``out``; returns its summary (with the honest-client numbers of a robustness run)."""
    from server.simulate import simulate

    check_out(out, cfg)
    if not cfg.faults.wanted:
        return simulate(cfg, str(out), progress=progress, verbose=verbose)
    from clients import app as honest
    from clients.node import RunFolderStorage
    from fedkd.faults.clientapp import hostile_client_app
    from fedkd.faults.crash import StopAfterRound
    from fedkd.faults.records import honest_summary

    from fedkd.faults.plan import FaultPlan

    plan = FaultPlan.from_settings(cfg.faults)
    train = functools.partial(honest.train, storage=RunFolderStorage(Path(out).resolve() / "nodes"), simulated=True)
    client_app = hostile_client_app(plan, train, honest.identify, cfg.wire)
    observer = StopAfterRound(plan.stop_after_round) if plan.stop_after_round else None
    summary = simulate(cfg, str(out), progress=progress, verbose=verbose, client_app=client_app,
                       observer=observer)
    rounds = read_rounds(out)
    extra = honest_summary(plan, rounds)
    if extra:
        summary = {**summary, "robustness": extra}
        write_json_atomic(Path(out) / "summary.json", summary)
    return summary

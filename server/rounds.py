"""The round loop: drive any Strategy, keep a bounded window of messages in flight, record, checkpoint.

For every round: ``strategy.configure_train`` makes the messages (one per node,
each with its own content), ``server/dispatch.py`` sends them and collects the
replies, ``strategy.aggregate_round`` screens and fuses them and returns the round's
record, which the loop writes to ``metrics.jsonl``, tells the observers and
checkpoints ``strategy.state_dict()``. The loop knows nothing of fusion rules.

The run stops early only by the operator's rule: ``server.max_failed_rounds``
rounds in a row with fewer than ``server.min_replies`` valid replies (or an
observer raising :class:`fedkd.observers.StopRun`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from flwr.app import ConfigRecord
from flwr.serverapp import Grid

from fedkd.config import Config, ConfigError
from fedkd.node_identity import load_registry
from fedkd.run_records import RunRecorder, new_run_dir
from fedkd.observers import RoundObserver, StopRun
from fedkd.privacy.records import privacy_summary
from fedkd.report.refusals import run_failure
from server import checkpoint, dispatch
from server.fedavg import CheckedFedAvg
from server.identity import IdentityBook
from server.public import PublicFacts, public_facts
from server.strategy import KnowledgeFusion

log = logging.getLogger("fedkd.server")
RECORD_FILES = ("metrics.jsonl", "summary.json", "checkpoint.json")


def build_strategy(cfg: Config, facts: PublicFacts, observer: RoundObserver):
    """The run's algorithm: FedAvg, or knowledge fusion with its registered rule."""
    settings = cfg.server
    registry = load_registry(settings.identity_registry) if settings.identity_registry else None
    identities = IdentityBook(settings.num_clients, registry, timeout=settings.identify_timeout,
                              first_timeout=settings.node_wait_timeout)
    if cfg.run.exchanges_weights:
        return CheckedFedAvg(cfg, facts, identities, on_reject=observer.on_reject)
    return KnowledgeFusion(cfg.fusion_rule, cfg, facts, identities, on_reject=observer.on_reject)


def check_out_dir(out: Path, resume: bool) -> None:
    """A new run writes only into a folder that does not exist or is empty (it deletes older checkpoint files
    of its own, so it may not share a folder); a resume only into its own run's folder."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"config key 'out': {out} is not a folder")
    if resume:
        return
    found = sorted(p.name for p in out.iterdir())[:50] if out.exists() else []
    if found:
        runs = [name for name in RECORD_FILES if name in found]
        what = f"a run's records ({', '.join(runs)})" if runs else f"other files ({', '.join(found[:3])}{', ...' if len(found) > 3 else ''})"
        raise ConfigError(f"config key 'out': {out} already holds {what}; choose a new or empty folder"
                          + (", or continue that run with --resume" if runs else ""))


def _restore(out: Path, cfg: Config, strategy) -> checkpoint.Checkpoint:
    ckpt = checkpoint.load_for_resume(out, cfg)
    checkpoint.restore_state(ckpt, strategy)
    return ckpt


def check_resume(out: str | Path, cfg: Config) -> None:
    """Everything a resume in ``out`` will check, done before Ray or any process starts (CheckpointError)."""
    _restore(Path(out), cfg, build_strategy(cfg, public_facts(cfg), RoundObserver()))


def wait_for_nodes(grid: Grid, expected: int, timeout: float, poll: float = 0.2) -> list[int]:
    """Node ids appear a little after start: wait until ``expected`` are connected."""
    deadline = time.monotonic() + timeout
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= expected:
            return nodes
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(nodes)} of {expected} nodes connected after {timeout:.0f} s "
                               "(server.node_wait_timeout)")
        time.sleep(poll)


def run_federation(grid: Grid, cfg: Config, out_dir: str | Path | None = None, progress: bool = True,
                   observer: RoundObserver | None = None) -> dict:
    """Run the config's rounds on the nodes behind ``grid``; return the summary."""
    from tqdm.auto import tqdm

    observer = observer or RoundObserver()
    settings = cfg.server
    out = Path(out_dir or cfg.run.out or new_run_dir())
    check_out_dir(out, settings.resume)
    facts = public_facts(cfg)
    strategy = build_strategy(cfg, facts, observer)
    # the whole checkpoint is checked and restored before the recorder touches a file: a refused resume loses nothing
    resume_from = _restore(out, cfg, strategy) if settings.resume else None
    recorder = RunRecorder(out, cfg, facts.as_dict())
    first = 1
    if resume_from is not None:
        checkpoint.restore_records(resume_from, recorder)
        first = resume_from.round + 1
    needed = settings.clients_per_round if settings.sampling else settings.num_clients
    wait_for_nodes(grid, needed, settings.node_wait_timeout)
    strategy.summary()
    arrays = strategy.initial_arrays()
    bar = tqdm(range(first, settings.rounds + 1), desc=f"{cfg.run.algorithm} rounds", disable=not progress,
               unit="round")
    for rnd in bar:
        started = time.perf_counter()
        messages = list(strategy.configure_train(rnd, arrays, ConfigRecord(), grid))
        replies = dispatch.send_and_receive(grid, messages, timeout=settings.reply_timeout,
                                            max_in_flight=settings.max_in_flight)
        result = strategy.aggregate_round(rnd, replies)
        if result.arrays is not None:
            arrays = result.arrays
        record = result.record
        record["round_seconds"] = time.perf_counter() - started
        recorder.log_round(record)
        if settings.checkpoint:
            checkpoint.save_checkpoint(out, rnd, cfg, strategy.state_dict(), len(recorder.rounds))
        bar.set_postfix(alma=f"{record['alma']:.3f}", glob=f"{record['global_acc']:.3f}")
        try:
            observer.on_round(record)
        except StopRun as stop:
            log.warning("stopping after round %d: %s; continue with --resume", rnd, stop)
            break
        if strategy.failed_rounds >= settings.max_failed_rounds:
            log.error("stopping after round %d: %d rounds in a row had fewer than server.min_replies=%d valid "
                      "replies (server.max_failed_rounds=%d)", rnd, strategy.failed_rounds, settings.min_replies,
                      settings.max_failed_rounds)
            break
    extra = privacy_summary(cfg.privacy, cfg.canaries, recorder.rounds)
    failure = run_failure(recorder.rounds, settings.min_replies, settings.max_failed_rounds)
    if failure:  # the command lines exit non-zero on it; the records stay for the post-mortem
        extra["failure"] = failure
        log.error("the run failed: %s", failure)
    return recorder.finish(extra)

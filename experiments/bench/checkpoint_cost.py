"""Checkpoint cost by round at scale: does saving the server's state grow with the rounds?

Writes what the round loop (``server/rounds.py``) writes after every round -- one ``metrics.jsonl``
line holding KnFu's weights over the fused clients, all N of them here (``RunRecorder.log_round``), and
the checkpoint of a ``KnowledgeFusion`` strategy's ``state_dict()`` (``server.checkpoint.save_checkpoint``:
each client's next targets, the counters, the config and how many round records it covers) -- for N
clients and R rounds, timing the checkpoint alone.

    .venv/bin/python experiments/bench/checkpoint_cost.py                     # N = 1000, 10 rounds (~10 s)
    .venv/bin/python experiments/bench/checkpoint_cost.py --clients 200 --rounds 50

ratio = checkpoint time in the last round / in the first; goal <= 2 (it must not grow with the rounds).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import _common  # noqa: F401  (sys.path and environment)
import numpy as np
from _common import finish, say


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--transfer", type=int, default=50, help="transfer samples M of each client's targets")
    args = parser.parse_args(argv)

    from fedkd.config import make_config
    from fedkd.fusion import get_rule
    from fedkd.run_records import RunRecorder
    from server import checkpoint
    from server.identity import IdentityBook
    from server.public import PublicFacts
    from server.strategy import KnowledgeFusion

    n, m, c = args.clients, args.transfer, 10
    cfg = make_config({"num_clients": n, "transfer_size": m})
    facts = PublicFacts(fingerprint="bench", num_classes=c, transfer_size=m, input_shape=(1, 8, 8),
                        has_global_test=True)
    strategy = KnowledgeFusion(get_rule("knfu"), cfg, facts, IdentityBook(n))
    strategy.targets = {pid: np.full((m, c), 1.0 / c, np.float32) for pid in range(n)}  # what fusion leaves

    weights = np.round(np.random.default_rng(0).random((n, n)) / n, 6).tolist()
    seconds = []
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as out:
        recorder = RunRecorder(out, cfg, {})
        for rnd in range(1, args.rounds + 1):
            recorder.log_round({"round": rnd, "fused_clients": list(range(n)), "weights": weights})
            started = time.perf_counter()
            checkpoint.save_checkpoint(out, rnd, cfg, strategy.state_dict(), len(recorder.rounds))
            seconds.append(time.perf_counter() - started)
        resumed = checkpoint.load_checkpoint(out)
        restored = KnowledgeFusion(get_rule("knfu"), cfg, facts, IdentityBook(n))
        restored.load_state_dict(resumed.state)
    say(f"{n} clients: checkpoint seconds by round {[round(s, 3) for s in seconds]}")
    ratio = seconds[-1] / seconds[0]
    return finish("checkpoint_cost", ratio, 2.0, met=ratio <= 2.0, clients=n, rounds=args.rounds,
                  seconds_by_round=[round(s, 4) for s in seconds], records_restored=len(resumed.rounds),
                  targets_restored=len(restored.targets))


if __name__ == "__main__":
    main()

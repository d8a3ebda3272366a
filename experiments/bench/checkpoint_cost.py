"""Checkpoint cost by round at scale: does saving the server's state grow with the rounds?

Writes what the server loop writes after every round -- one ``metrics.jsonl`` line holding KnFu's N x N
weight matrix (``RunRecorder.log_round``) and the checkpoint (``server.checkpoint.save_checkpoint``:
each client's next targets, the config, and how many round records it covers) -- for N clients and R
rounds, timing the checkpoint alone.

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
    from fedkd.metrics import RunRecorder
    from server import checkpoint

    n, m, c = args.clients, args.transfer, 10
    cfg = make_config({"num_clients": n})

    class FusionState:  # what save_checkpoint reads from the loop's state
        targets = {pid: np.full((m, c), 1.0 / c, np.float32) for pid in range(n)}

    weights = np.round(np.random.default_rng(0).random((n, n)) / n, 6).tolist()
    seconds = []
    with tempfile.TemporaryDirectory(prefix="bench-checkpoint-") as out:
        recorder = RunRecorder(out, dict(cfg), {})
        for rnd in range(1, args.rounds + 1):
            recorder.log_round({"round": rnd, "weights": weights})
            started = time.perf_counter()
            checkpoint.save_checkpoint(out, rnd, cfg, FusionState, len(recorder.rounds))
            seconds.append(time.perf_counter() - started)
        resumed = checkpoint.load_checkpoint(out)
    say(f"{n} clients: checkpoint seconds by round {[round(s, 3) for s in seconds]}")
    ratio = seconds[-1] / seconds[0]
    return finish("checkpoint_cost", ratio, 2.0, met=ratio <= 2.0, clients=n, rounds=args.rounds,
                  seconds_by_round=[round(s, 4) for s in seconds], records_restored=len(resumed.rounds))


if __name__ == "__main__":
    main()

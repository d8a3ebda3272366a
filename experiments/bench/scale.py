"""Scale: 1,000 virtual clients x 3 rounds through Flower's simulation engine on this machine.

Each client gets a tiny share of digits (IID split, ``min_partition_size=1``) and does one epoch of
revisit and digest on a small transfer set, so the run measures the engine -- messages, Ray actors,
per-node state, fusion and records for N clients -- more than training. A sampler thread reads the
memory of the whole process tree (this process, Ray's GCS and raylet, every worker) every 0.5 s.

    .venv/bin/python experiments/bench/scale.py                      # 1000 clients, 3 rounds (~5 min)
    .venv/bin/python experiments/bench/scale.py --clients 200 --set algorithm=fedmd

ratio = peak RSS of the process tree / 6 GB (goal <= 1); time per round is reported beside it.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path and environment)
from _common import finish, median, say
from proctree import PeakSampler

GOAL_GB = 6.0
TINY_CLIENTS = {"partition": "iid", "min_partition_size": 1, "transfer_size": 50, "local_test_size": 10,
                "global_test_size": 50, "digest_epochs": 1, "revisit_epochs": 1, "save_models": False}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="fedkd config overrides on top of the tiny per-client settings")
    parser.add_argument("--keep", help="keep the run folder here instead of a temporary one")
    args = parser.parse_args(argv)

    from fedkd.config import make_config, parse_assignments
    from server.simulate import simulate

    cfg = make_config(dict(TINY_CLIENTS, num_clients=args.clients, rounds=args.rounds,
                           **parse_assignments(args.sets)))
    say(f"config: {args.clients} clients x {args.rounds} rounds, {cfg['algorithm']}, models {cfg['models']}, "
        f"transfer {cfg['transfer_size']}, sim.client_cpus {cfg['sim.client_cpus']}")
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        out = Path(args.keep or tmp) / "run"
        with PeakSampler() as sampler:
            started = time.perf_counter()
            summary = simulate(cfg, str(out), progress=False)
            wall = time.perf_counter() - started
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        metrics_mb = (out / "metrics.jsonl").stat().st_size / 2**20
    rounds = [r["round_seconds"] for r in records]
    memory = sampler.as_dict()
    say(f"rounds {[round(s, 1) for s in rounds]} s; wall {wall:.0f} s; memory {memory}")
    ratio = memory["peak_rss_gb"] / GOAL_GB
    return finish("scale", ratio, 1.0, met=ratio <= 1.0, goal_peak_rss_gb=GOAL_GB, **memory,
                  clients=args.clients, rounds_run=len(rounds), replies_last_round=records[-1]["replies"],
                  round_seconds=[round(s, 2) for s in rounds],
                  round_s_median_after_first=round(median(rounds[1:]), 2) if len(rounds) > 1 else None,
                  wall_s=round(wall, 1), outside_rounds_s=round(wall - sum(rounds), 1),
                  metrics_jsonl_mb=round(metrics_mb, 2), alma=summary["alma"], config_overrides=args.sets)


if __name__ == "__main__":
    main()

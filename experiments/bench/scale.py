"""Scale: thousands of registered virtual clients, a sample of them per round, through Flower's simulation engine.

Each client gets a tiny IID share of the data (``min_partition_size=1``, about two private images) and does
one epoch of revisit and digest on a small transfer set, so the run measures the engine -- registered
nodes, messages, Ray actors, per-node state, identity binding, fusion and records -- more than training.
A sampler thread reads the memory of the whole process tree (this process, Ray's GCS and raylet, every
worker) every 0.5 s.

With several client counts (``--clients 1000,5000,10000``) each runs in a fresh process, one after the
other, with the same clients sampled per round (``--per-round``, the ``clients_per_round`` key): the
curve shows whether a round's time and its record grow with the clients *registered* or only with the
clients *sampled*. Digits holds about 1,400 private images, so above 1,000 clients the data are
Fashion-MNIST (two private images per client, the same at every size).

    .venv/bin/python experiments/bench/scale.py                      # 1000 clients, all of them, 3 rounds (~5 min)
    .venv/bin/python experiments/bench/scale.py --clients 1000,5000,10000 --per-round 100 --rounds 3
    .venv/bin/python experiments/bench/scale.py --clients 200 --set algorithm=fedmd

ratio = peak RSS of the process tree at the largest size / 6 GB (goal <= 1). With several sizes the
growth of the per-round time (median of rounds 2..R, largest size / smallest) and of the per-round
record is reported beside it; the goal there is that 10x the registered clients costs at most 1.5x.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path and environment)
from _common import finish, median, say
from proctree import PeakSampler

GOAL_GB = 6.0
GOAL_GROWTH = 1.5  # per-round time at the largest size / at the smallest, same clients sampled
DIGITS_MAX_CLIENTS = 1000  # digits' ~1,400 private images give every client at least one up to here
IMAGES_PER_CLIENT = 2      # Fashion-MNIST: the private pool grows with the clients, each share stays the same
TINY_CLIENTS = {"partition": "iid", "min_partition_size": 1, "transfer_size": 50, "local_test_size": 10,
                "global_test_size": 50, "digest_epochs": 1, "revisit_epochs": 1, "save_models": False}


def config_for(clients: int, per_round: int, rounds: int, dataset: str, sets: list[str]):
    from fedkd.config import make_config, parse_assignments

    values = dict(TINY_CLIENTS, dataset=dataset, num_clients=clients, rounds=rounds, clients_per_round=per_round)
    if dataset != "digits":
        values["private_pool_size"] = IMAGES_PER_CLIENT * clients
    return make_config(dict(values, **parse_assignments(sets)))


def one_size(cfg, keep: str | None) -> dict:
    """One simulation in this process: memory of the tree, round times, record sizes."""
    from server.simulate import simulate

    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        out = Path(keep or tmp) / f"run-{cfg['num_clients']}"
        with PeakSampler() as sampler:
            started = time.perf_counter()
            summary = simulate(cfg, str(out), progress=False)
            wall = time.perf_counter() - started
        lines = (out / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    rounds = [r["round_seconds"] for r in records]
    return dict(sampler.as_dict(), clients=cfg["num_clients"], per_round=cfg["clients_per_round"] or cfg["num_clients"],
                dataset=cfg["dataset"], rounds_run=len(rounds), replies=[r["replies"] for r in records],
                sampled_per_round=[len(r.get("sampled_clients", [])) for r in records],
                round_seconds=[round(s, 2) for s in rounds],
                round_s_median_after_first=round(median(rounds[1:]), 3) if len(rounds) > 1 else None,
                record_bytes_per_round=round(sum(len(line) + 1 for line in lines) / max(1, len(lines))),
                wall_s=round(wall, 1), outside_rounds_s=round(wall - sum(rounds), 1), alma=summary["alma"])


def in_fresh_process(argv: list[str]) -> dict:
    """Run this script for one size in its own process (Ray and torch state never carry over)."""
    proc = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"scale.py {' '.join(argv)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", default="1000", help="registered clients, comma-separated for a curve")
    parser.add_argument("--per-round", type=int, default=0, help="clients sampled per round (0 = all)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dataset", default="", help="default: digits up to 1,000 clients, else fashion-mnist")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="fedkd config overrides on top of the tiny per-client settings")
    parser.add_argument("--keep", help="keep the run folders here instead of temporary ones")
    args = parser.parse_args(argv)
    sizes = [int(n) for n in args.clients.split(",") if n.strip()]
    dataset = args.dataset or ("digits" if max(sizes) <= DIGITS_MAX_CLIENTS else "fashion-mnist")

    if len(sizes) == 1:
        cfg = config_for(sizes[0], args.per_round, args.rounds, dataset, args.sets)
        say(f"config: {sizes[0]} clients, {args.per_round or 'all'} per round, {args.rounds} rounds, "
            f"{cfg['algorithm']}, {dataset}, models {cfg['models']}, transfer {cfg['transfer_size']}")
        rows = [one_size(cfg, args.keep)]
    else:
        rows = []
        for n in sizes:
            child = ["--clients", str(n), "--per-round", str(args.per_round), "--rounds", str(args.rounds),
                     "--dataset", dataset, *(a for s in args.sets for a in ("--set", s)),
                     *(("--keep", args.keep) if args.keep else ())]
            rows.append(in_fresh_process(child)["rows"][0])
            say(f"{n:6d} registered: {rows[-1]}")
    for r in rows:
        say(f"{r['clients']:6d} registered, {r['per_round']} per round: rounds {r['round_seconds']} s, "
            f"peak RSS {r['peak_rss_gb']} GB (PSS {r['peak_pss_gb']}), record {r['record_bytes_per_round']} B/round")
    peak = max(r["peak_rss_gb"] for r in rows)
    small, large = rows[0], rows[-1]
    growth = (large["round_s_median_after_first"] / small["round_s_median_after_first"]
              if len(rows) > 1 and small["round_s_median_after_first"] else None)
    record_growth = large["record_bytes_per_round"] / small["record_bytes_per_round"] if len(rows) > 1 else None
    ratio = peak / GOAL_GB
    return finish("scale", ratio, 1.0, met=ratio <= 1.0 and (growth is None or growth <= GOAL_GROWTH),
                  goal_peak_rss_gb=GOAL_GB, peak_rss_gb=peak, goal_round_time_growth=GOAL_GROWTH,
                  round_time_growth=None if growth is None else round(growth, 3),
                  record_growth=None if record_growth is None else round(record_growth, 3),
                  registered_growth=large["clients"] / small["clients"], rows=rows,
                  replies_last_round=large["replies"][-1], rounds_run=large["rounds_run"],
                  config_overrides=args.sets)


if __name__ == "__main__":
    main()

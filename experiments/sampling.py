"""Client sampling: ALMA and global accuracy vs the fraction of clients sampled per round, over seeds.

    .venv/bin/python experiments/sampling.py                   # Fashion-MNIST, fractions 1.0/0.5/0.2/0.1, seeds 0,1,2
    .venv/bin/python experiments/sampling.py --estimate        # only say how long the grid would take
    .venv/bin/python experiments/sampling.py --rounds 5 --seeds 0 --fractions 1.0,0.2   # a reduced grid

Every run is ``experiments/configs/fashion.toml`` (10 clients, KnFu unless ``--set algorithm=...``) with
``clients_per_round = round(fraction * num_clients)`` (fraction 1.0 is the default: everyone, every
round) and the same number of rounds, so a smaller fraction means fewer client-rounds of training and
of uploads. Under sampling a client trains only in the rounds it is drawn, and distils toward targets
fused from the latest replies at most ``server.max_staleness`` rounds old (``server/strategy.py``).

Two ALMAs are reported, because with sampling the last round's ALMA is the mean over the few clients
drawn in that round (one client at fraction 0.1):

* ``alma_last``: the run's ALMA, the last round's valid replies (what ``summary.json`` holds);
* ``alma_clients``: every client's local accuracy after the last round it took part in, averaged over all
  clients that took part at least once (a client never drawn has nothing to report: it is left out of
  the mean and counted in ``never_sampled``).

Global accuracy likewise (``global_last``, ``global_clients``). Each run's summary is kept in
``--out`` (``<fraction>-<seed>/``) and a run already there is not repeated. The closing JSON line holds
every run and the table; nothing here is timed except the estimate.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from fedkd.config import load_config  # noqa: E402
from fedkd.run_records import read_rounds  # noqa: E402

DEFAULT_CONFIG = ROOT / "configs" / "fashion.toml"
FRACTIONS = "1.0,0.5,0.2,0.1"


def per_round_for(fraction: float, num_clients: int) -> int:
    """``clients_per_round`` for a fraction (0 = every client, the unsampled default)."""
    k = max(1, round(fraction * num_clients))
    return 0 if k >= num_clients else k


def latest_per_client(records: list[dict], key: str) -> dict[str, float]:
    """Each client's value of ``key`` (a per-client dict in the round records) in the last round it replied."""
    latest: dict[str, float] = {}
    for record in records:
        latest.update(record.get(key, {}))
    return latest


def run_one(cfg, out: Path) -> dict:
    """One simulation (or its kept result): the figures of one (fraction, seed)."""
    from server.simulate import simulate

    if (out / "summary.json").exists() and (out / "metrics.jsonl").exists():
        summary = json.loads((out / "summary.json").read_text())
    else:
        summary = simulate(cfg, str(out), progress=False)
    records = read_rounds(out)
    local = latest_per_client(records, "per_client_local_acc")
    glob = latest_per_client(records, "per_client_global_acc")
    sampled = set().union(*(r.get("sampled_clients", range(cfg["num_clients"])) for r in records))
    replies = sum(r["replies"] for r in records)
    return {"alma_last": summary["alma"], "global_last": summary["global_acc"],
            "alma_clients": statistics.fmean(local.values()), "global_clients": statistics.fmean(glob.values()),
            "never_sampled": cfg["num_clients"] - len(sampled), "client_rounds": replies,
            "rejected": sum(summary["rejected_replies"].values()), "missing": summary["missing_replies"]}


def estimate_seconds(cfg, fractions: list[float], seeds: list[int], per_client_round: float,
                     per_run: float = 20.0) -> float:
    """Client-rounds x measured seconds per client-round / actors, plus Ray's start-up per run."""
    import os

    actors = max(1, int((cfg.sim.num_cpus or os.cpu_count() or 1) // cfg.sim.client_cpus))
    client_rounds = sum((per_round_for(f, cfg["num_clients"]) or cfg["num_clients"]) * cfg["rounds"]
                        for f in fractions) * len(seeds)
    return client_rounds * per_client_round / actors + per_run * len(fractions) * len(seeds)


def time_client_round(cfg) -> float:
    """Seconds of one client-round of this config on one thread (second of two, after warm-up)."""
    import torch

    from clients.node import load_node
    from fedkd.client_step import client_step, new_client_model

    torch.set_num_threads(1)
    inputs = load_node(cfg, {"partition-id": 0}).inputs
    model = new_client_model(cfg.training, 0, inputs.input_shape, inputs.num_classes)[0]
    cpu = torch.device("cpu")
    client_step(cfg.training, cfg.privacy, inputs, model, round_num=1, targets=None, releases=0, device=cpu)
    started = time.perf_counter()
    client_step(cfg.training, cfg.privacy, inputs, model, round_num=2, targets=None, releases=0, device=cpu)
    return time.perf_counter() - started


def table(rows: list[dict]) -> str:
    lines = ["| fraction | clients / round | ALMA (every client, latest) | ALMA (last round) | global acc. "
             "(every client, latest) | global acc. (last round) | client-rounds | never sampled |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['fraction']} | {r['per_round']} | {r['alma_clients']:.3f} ± {r['alma_clients_std']:.3f} "
                     f"| {r['alma_last']:.3f} ± {r['alma_last_std']:.3f} | {r['global_clients']:.3f} ± "
                     f"{r['global_clients_std']:.3f} | {r['global_last']:.3f} | {r['client_rounds']} "
                     f"| {r['never_sampled']} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--fractions", default=FRACTIONS)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rounds", type=int, default=0, help="override the config's rounds (0 = keep)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default="runs/sampling", help="one folder per (fraction, seed) run")
    parser.add_argument("--estimate", action="store_true", help="only time one client-round and estimate")
    args = parser.parse_args(argv)

    fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    base = load_config(args.config, args.sets + ([f"rounds={args.rounds}"] if args.rounds else []))
    per_client_round = time_client_round(base)
    estimate = estimate_seconds(base, fractions, seeds, per_client_round)
    print(f"{args.config}: {base['num_clients']} clients, {base['rounds']} rounds, {base['algorithm']}; "
          f"{per_client_round:.2f} s per client-round; estimated {estimate / 60:.0f} min for "
          f"{len(fractions)} fractions x {len(seeds)} seeds", flush=True)
    if args.estimate:
        print(json.dumps({"experiment": "sampling", "estimate_s": round(estimate), "per_client_round_s":
                          round(per_client_round, 3)}))
        return {}

    out = Path(args.out)
    runs, rows = [], []
    for fraction in fractions:
        k = per_round_for(fraction, base["num_clients"])
        got = []
        for seed in seeds:
            cfg = base.replace(clients_per_round=k, seed=seed)
            started = time.perf_counter()
            got.append(dict(run_one(cfg, out / f"{fraction}-{seed}"), fraction=fraction, seed=seed))
            print(f"fraction {fraction} seed {seed}: {got[-1]} ({time.perf_counter() - started:.0f} s)", flush=True)
        runs.extend(got)
        row = {"fraction": fraction, "per_round": k or base["num_clients"],
               "client_rounds": round(statistics.fmean(g["client_rounds"] for g in got)),
               "never_sampled": max(g["never_sampled"] for g in got)}
        for key in ("alma_clients", "alma_last", "global_clients", "global_last"):
            values = [g[key] for g in got]
            row[key], row[f"{key}_std"] = statistics.fmean(values), statistics.pstdev(values)
        rows.append(row)
    print(table(rows), flush=True)
    result = {"experiment": "sampling", "config": args.config, "rounds": base["rounds"],
              "algorithm": base["algorithm"], "seeds": seeds, "rows": rows, "runs": runs, "overrides": args.sets,
              "estimate_s": round(estimate)}
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()

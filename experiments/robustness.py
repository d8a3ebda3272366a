"""Malicious clients vs. fusion: how honest clients' accuracy and KnFu's neighbour weights respond.

    python experiments/robustness.py            # run the grid (resumable), then print the table
    python experiments/robustness.py --table    # only print the table from the ledger
    python experiments/robustness.py --seed 1 --only fedmd-k0,knfu-flip-k3   # a few runs with another seed

Grid: k in {0, 1, 2, 3} malicious clients of 10 (the last k partitions) x attack kind in
{random, flip} x algorithm in {fedmd, dsfl, knfu}, plus one ``local`` run as the reference
(local fuses nothing, so its clients do not depend on k). Malicious clients train honestly and
lie only in what they upload (``fedkd/faults/knowledge.py``), so every number here is over the
*honest* clients: ALMA_honest = mean local accuracy of the partitions that are not malicious.

Each finished run is one JSON line in the ledger; a run already there is skipped.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from fedkd.config import load_config  # noqa: E402
from fedkd.run_records import read_rounds, weight_matrix  # noqa: E402

BASE = ROOT / "configs" / "robustness.toml"
LEDGER = ROOT / "results" / "robustness.jsonl"
KS = (0, 1, 2, 3)
KINDS = ("random", "flip")
ALGORITHMS = ("fedmd", "dsfl", "knfu")


def grid():
    """(name, overrides) for every run; k=0 is shared by both attack kinds."""
    yield "local", {"algorithm": "local"}
    for algorithm in ALGORITHMS:
        yield f"{algorithm}-k0", {"algorithm": algorithm}
        for kind in KINDS:
            for k in KS[1:]:
                yield f"{algorithm}-{kind}-k{k}", {"algorithm": algorithm, "fault.kind": kind,
                                                   "fault.num_malicious": k}


def malicious_weight(records: list[dict], bad: set[int], n: int) -> dict:
    """Weight honest clients put on malicious ones: last round and mean over rounds with fusion."""
    honest = [i for i in range(n) if i not in bad]
    per_round = []
    for record in records:
        if "weights" not in record or not bad:
            continue
        w = weight_matrix(record, n)
        per_round.append(float(w[np.ix_(honest, sorted(bad))].sum(axis=1).mean()))
    if not per_round:
        return {"weight_on_malicious_last": None, "weight_on_malicious_mean": None}
    return {"weight_on_malicious_last": per_round[-1], "weight_on_malicious_mean": float(np.mean(per_round))}


def measure(out: Path, k: int, n: int) -> dict:
    """Honest/malicious accuracies and fusion weights from one run's metrics.jsonl."""
    records = read_rounds(out)
    bad = set(range(n - k, n))
    last = records[-1]
    local, glob = last["per_client_local_acc"], last["per_client_global_acc"]
    row = {
        "alma_honest": float(np.mean([v for p, v in local.items() if int(p) not in bad])),
        "global_honest": float(np.mean([v for p, v in glob.items() if int(p) not in bad])),
        "alma_malicious": float(np.mean([v for p, v in local.items() if int(p) in bad])) if bad else None,
        "alma_honest_per_round": [float(np.mean([v for p, v in r["per_client_local_acc"].items()
                                                 if int(p) not in bad])) for r in records],
        "per_client_local_acc": local,
        "neighbour_counts_last": last.get("neighbour_counts"),
    }
    row.update(malicious_weight(records, bad, n))
    if k == 0:  # the reference: weight on the partitions that turn malicious in the k > 0 runs, while honest
        row["weight_on_last_partitions"] = {
            str(j): malicious_weight(records, set(range(n - j, n)), n) for j in KS[1:]}
    return row


def remeasure(out_root: Path) -> None:
    """Recompute every ledger row's measurements from its run folder (after changing :func:`measure`)."""
    rows = [json.loads(x) for x in LEDGER.read_text().splitlines() if x.strip()]
    for row in rows:
        k = int(row["overrides"].get("fault.num_malicious", 0))
        row.update(measure(out_root / row["name"], k, 10))
    LEDGER.write_text("".join(json.dumps(row) + "\n" for row in rows))


def seeded(name: str, seed: int) -> str:
    return name if seed == 0 else f"{name}-s{seed}"


def run_grid(out_root: Path, seed: int = 0, only: set[str] | None = None) -> None:
    from fedkd.cli.simulation import run_simulation

    LEDGER.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if LEDGER.exists():
        done = {json.loads(line)["name"] for line in LEDGER.read_text().splitlines() if line.strip()}
    runs = list(grid())
    for i, (name, overrides) in enumerate(runs, 1):
        if only and name not in only:
            continue
        overrides = dict(overrides, seed=seed)
        name = seeded(name, seed)
        if name in done:
            continue
        cfg = load_config(BASE, [f"{key}={value}" for key, value in overrides.items()])
        out = out_root / name
        started = time.perf_counter()
        run_simulation(cfg, out, progress=False)
        seconds = time.perf_counter() - started
        row = {"name": name, "overrides": overrides, "seconds": seconds,
               **measure(out, cfg["fault.num_malicious"], cfg["num_clients"])}
        with open(LEDGER, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(f"[{i}/{len(runs)}] {name}: honest ALMA {row['alma_honest']:.4f} ({seconds:.0f} s)", flush=True)


def _fmt(value, digits=3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def print_table() -> None:
    rows = {json.loads(x)["name"]: json.loads(x) for x in LEDGER.read_text().splitlines() if x.strip()}
    local = rows.get("local")
    n = 10
    print("| algorithm | attack | k | honest ALMA | Δ vs k=0 | honest global acc | weight on malicious "
          "(last / mean over rounds) | same partitions, all honest (k=0) | uniform share |")
    print("|---|---|---|---|---|---|---|---|---|")
    if local:
        for k in KS:
            bad = set(range(n - k, n))
            alma = np.mean([v for p, v in local["per_client_local_acc"].items() if int(p) not in bad])
            print(f"| local | – | {k} | {alma:.3f} | – | – | – | – | – |")
    for algorithm in ALGORITHMS:
        base = rows.get(f"{algorithm}-k0")
        for kind in KINDS:
            for k in KS:
                row = base if k == 0 else rows.get(f"{algorithm}-{kind}-k{k}")
                if row is None or (k == 0 and kind != KINDS[0]):
                    continue
                delta = None if base is None or k == 0 else row["alma_honest"] - base["alma_honest"]
                share = k / (n - 1) if algorithm == "knfu" else k / n  # KnFu excludes self by default
                attack = "none" if k == 0 else kind
                weights = (f"{_fmt(row['weight_on_malicious_last'])} / {_fmt(row['weight_on_malicious_mean'])}"
                           if k else "–")
                ref = base.get("weight_on_last_partitions", {}).get(str(k)) if base and k else None
                reference = f"{_fmt(ref['weight_on_malicious_last'])} / {_fmt(ref['weight_on_malicious_mean'])}" \
                    if ref else "–"
                print(f"| {algorithm} | {attack} | {k} | {row['alma_honest']:.3f} | "
                      f"{'–' if delta is None else f'{delta:+.3f}'} | {row['global_honest']:.3f} | {weights} | "
                      f"{reference} | {share:.3f} |")
    total = sum(r["seconds"] for r in rows.values())
    print(f"\n{len(rows)} runs, {total / 60:.1f} min of simulation")


def print_seed_table() -> None:
    """Runs repeated with other seeds, next to seed 0: honest ALMA, honest global acc, weight on malicious."""
    rows = {json.loads(x)["name"]: json.loads(x) for x in LEDGER.read_text().splitlines() if x.strip()}
    repeated = sorted({re.sub(r"-s\d+$", "", name) for name in rows if re.search(r"-s\d+$", name)})
    if not repeated:
        return
    print("\n| run | seed | honest ALMA | honest global acc | weight on malicious (last) |")
    print("|---|---|---|---|---|")
    for base in repeated:
        for name in sorted(n for n in rows if n == base or n.startswith(base + "-s")):
            row = rows[name]
            print(f"| {base} | {row['overrides'].get('seed', 0)} | {row['alma_honest']:.3f} | "
                  f"{row['global_honest']:.3f} | {_fmt(row['weight_on_malicious_last'])} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", action="store_true", help="only print the table from the ledger")
    parser.add_argument("--remeasure", action="store_true",
                        help="recompute the ledger's measurements from the run folders, then print the table")
    parser.add_argument("--out", default=str(ROOT / "runs" / "robustness"), help="folder for run records")
    parser.add_argument("--seed", type=int, default=0, help="run seed (runs with seed > 0 are named <run>-s<seed>)")
    parser.add_argument("--only", default="", help="comma-separated run names of the grid to run (default all)")
    args = parser.parse_args()
    if args.remeasure:
        remeasure(Path(args.out))
    elif not args.table:
        only = {x.strip() for x in args.only.split(",") if x.strip()} or None
        run_grid(Path(args.out), args.seed, only)
    print_table()
    print_seed_table()


if __name__ == "__main__":
    main()

"""Turn a grid ledger (experiments/results/<grid>.jsonl) into markdown tables.

    python experiments/tables.py results   # mean ± std over seeds, per alpha and algorithm
    python experiments/tables.py tune      # one row per validation run
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent


def load(grid: str) -> list[dict]:
    path = ROOT / "results" / f"{grid}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def pm(values) -> str:
    values = np.asarray(values, dtype=float) * 100
    return f"{values.mean():.1f} ± {values.std():.1f}" if len(values) > 1 else f"{values.mean():.1f}"


def results_table(rows: list[dict]) -> str:
    groups = defaultdict(list)
    for r in rows:
        o = r["overrides"]
        groups[(o["alpha"], o["algorithm"])].append(r)
    order = ["local", "fedmd", "dsfl", "knfu", "fedavg"]
    lines = ["| α | algorithm | models | ALMA % | global acc % | Δ ALMA vs local | Δ global vs local | "
             "bytes up / client-round | seeds | s / run |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for alpha in sorted({a for a, _ in groups}):
        local = groups.get((alpha, "local"), [])
        base_alma = np.mean([r["summary"]["alma"] for r in local]) if local else np.nan
        base_glob = np.mean([r["summary"]["global_acc"] for r in local]) if local else np.nan
        for name in order:
            runs = groups.get((alpha, name))
            if not runs:
                continue
            alma = [r["summary"]["alma"] for r in runs]
            glob = [r["summary"]["global_acc"] for r in runs]
            models = ",".join(runs[0]["summary"]["models"])
            lines.append(
                f"| {alpha:g} | {name} | {models} | {pm(alma)} | {pm(glob)} | "
                f"{100 * (np.mean(alma) - base_alma):+.1f} | {100 * (np.mean(glob) - base_glob):+.1f} | "
                f"{np.mean([r['summary']['bytes_up_per_client_round'] for r in runs]):,.0f} | {len(runs)} | "
                f"{np.mean([r['seconds'] for r in runs]):.0f} |")
    return "\n".join(lines)


def tune_table(rows: list[dict]) -> str:
    lines = ["| α | algorithm | order | digest epochs | distill weight | T | β | self | ALMA % (val) | "
             "global % (val) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["overrides"]["alpha"], r["overrides"]["algorithm"] != "local")):
        o, s = r["overrides"], r["summary"]
        lines.append(
            f"| {o['alpha']:g} | {o['algorithm']} | {'-' if o['algorithm'] == 'local' else o.get('order', 'digest-revisit')} | "
            f"{o.get('digest_epochs', '-')} | {o.get('distill_weight', '-')} | {o.get('temperature', '-')} | "
            f"{o.get('knfu.beta', '-')} | {o.get('knfu.include_self', False)} | {100 * s['alma']:.1f} | "
            f"{100 * s['global_acc']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("grid", choices=("results", "tune"))
    args = parser.parse_args()
    rows = load(args.grid)
    print(results_table(rows) if args.grid == "results" else tune_table(rows))
    total = sum(r["seconds"] for r in rows)
    print(f"\n{len(rows)} runs, {total / 60:.1f} min of wall time in all.")


if __name__ == "__main__":
    main()

"""Run a grid of simulations, one JSON line per finished run (resumable), and summarise it.

    python experiments/grid.py results  # the docs/results.md grid (Fashion-MNIST)
    python experiments/grid.py tune     # protocol settings chosen on the validation split

A run already in the JSONL file is skipped, so an interrupted grid continues
where it stopped. Summaries are written by ``experiments/tables.py``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT.parent))

from fedkd.config import load_config  # noqa: E402
from fedkd.cli.simulation import run_simulation  # noqa: E402

BASE = ROOT / "configs" / "fashion.toml"


def results_grid():
    """alpha x algorithm x seed on the test split; fedavg on homogeneous CNNs."""
    # seed-major order: an interrupted grid still covers every alpha
    for seed, alpha in itertools.product((0, 1, 2), (0.1, 0.5, 5.0)):
        for algorithm in ("local", "fedmd", "dsfl", "knfu"):
            yield {"alpha": alpha, "seed": seed, "algorithm": algorithm}
        yield {"alpha": alpha, "seed": seed, "algorithm": "fedavg", "models": "cnn_small"}


def tuning_grid():
    """KnFu protocol settings vs local, on the validation split with a seed the results never use."""
    common = {"eval_split": "val", "seed": 100, "rounds": 6, "algorithm": "knfu", "knfu.beta": 10.0}
    for alpha in (0.1, 0.5):
        yield {"eval_split": "val", "seed": 100, "rounds": 6, "alpha": alpha, "algorithm": "local"}
        yield dict(common, alpha=alpha, order="digest-revisit", digest_epochs=1, temperature=3.0)
        for weight in (0.3, 1.0):
            yield dict(common, alpha=alpha, order="joint", distill_weight=weight, temperature=3.0)


GRIDS = {"results": results_grid, "tune": tuning_grid}


def key_of(overrides: dict) -> str:
    return json.dumps(overrides, sort_keys=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("grid", choices=sorted(GRIDS))
    parser.add_argument("--out", default=None, help="folder for run records (default experiments/runs/<grid>)")
    args = parser.parse_args()
    out = Path(args.out or ROOT / "runs" / args.grid)
    out.mkdir(parents=True, exist_ok=True)
    ledger = ROOT / "results" / f"{args.grid}.jsonl"
    ledger.parent.mkdir(exist_ok=True)
    done = set()
    if ledger.exists():
        done = {json.loads(line)["key"] for line in ledger.read_text().splitlines() if line.strip()}
    runs = list(GRIDS[args.grid]())
    for i, overrides in enumerate(runs):
        key = key_of(overrides)
        if key in done:
            continue
        cfg = load_config(BASE, [f"{k}={v}" for k, v in overrides.items()])
        started = time.perf_counter()
        summary = run_simulation(cfg, out / f"run{i:03d}", progress=False)
        seconds = time.perf_counter() - started
        with open(ledger, "a") as fh:
            fh.write(json.dumps({"key": key, "overrides": overrides, "seconds": seconds,
                                 "summary": summary}) + "\n")
        print(f"[{i + 1}/{len(runs)}] {overrides}: ALMA {summary['alma']:.4f} global {summary['global_acc']:.4f} "
              f"({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

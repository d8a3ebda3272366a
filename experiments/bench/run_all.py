"""Run every CPU benchmark one after another and collect their closing JSON lines.

    .venv/bin/python experiments/bench/run_all.py                  # all seven, default sizes (~35 min)
    .venv/bin/python experiments/bench/run_all.py fusion bytes     # some of them
    .venv/bin/python experiments/bench/run_all.py --out runs/bench # where the JSON files go

Each benchmark runs in its own process (Ray and torch state never leak between them); its full output
goes to ``<out>/<name>.log`` and its result to ``<out>/<name>.json``. A table of bench, ratio, goal and
whether the goal was met is printed at the end (cold_start is a profile without a goal). ``gpu`` runs the CPU half only where there is no CUDA.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = ("fusion", "round_overhead", "startup", "bytes", "scale", "checkpoint_cost", "cold_start", "gpu")


def lower_is_better(name: str) -> bool:
    return name in ("fusion", "round_overhead", "scale", "checkpoint_cost")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(BENCHES), help=f"any of {', '.join(BENCHES)}")
    parser.add_argument("--out", default="runs/bench", help="folder for <name>.log and <name>.json")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHES)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    rows = []
    for name in args.names:
        started = time.perf_counter()
        log = out / f"{name}.log"
        with open(log, "w") as fh:
            code = subprocess.run([sys.executable, str(HERE / f"{name}.py")], stdout=fh,
                                  stderr=subprocess.STDOUT).returncode
        lines = [line for line in log.read_text().splitlines() if line.startswith("{")]
        result = json.loads(lines[-1]) if code == 0 and lines else {"bench": name, "ratio": None, "error": code}
        (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        ratio, goal = result.get("ratio"), result.get("goal")
        met = None if ratio is None or goal is None else (ratio <= goal if lower_is_better(name) else ratio >= goal)
        rows.append((name, ratio, goal, met, time.perf_counter() - started))
        target = "no goal" if goal is None else f"goal {'<=' if lower_is_better(name) else '>='} {goal}"
        print(f"{name:15s} ratio {ratio}  {target}  met {met}  ({rows[-1][4]:.0f} s, log {log})", flush=True)
    return 0 if all(r[3] is not False for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())

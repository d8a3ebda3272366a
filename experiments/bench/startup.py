"""Start-up of a lone ``fedkd simulate``: what a run pays beyond its steady rounds.

Runs the command (the default digits run unless ``--set`` says otherwise) ``--repeats`` times, each in a
fresh process, and reads each run's ``timing.json``. Start-up = the command's wall time minus R times the
median of rounds 2..R: the imports, Ray's start and stop, the actors' cold start and round 1's extra.
With ``--before PATH`` (another checkout of the project, e.g. a ``git worktree`` of an older commit) the two
trees alternate, run by run, so that the machine's load hits both alike, and ratio = before / after.

    .venv/bin/python experiments/bench/startup.py                           # 3 runs of today's code
    .venv/bin/python experiments/bench/startup.py --before /tmp/wt-old      # 3 alternating pairs

ratio: the median start-up in seconds (goal: 4 s, issue 23), or before / after with ``--before``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO_ROOT, finish, median, say

GOAL_SECONDS = 4.0


def one_run(tree: Path, sets: list[str], out: Path) -> dict:
    argv = [sys.executable, "-m", "fedkd.cli", "simulate", "--quiet", "--out", str(out)]
    for item in sets:
        argv += ["--set", item]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=tree, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"fedkd simulate failed in {tree} ({done.returncode}):\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    rounds = [float(x) for x in json.loads((out / "timing.json").read_text())["round_seconds"]]
    steady = median(rounds[1:] or rounds)
    return {"wall_s": wall, "round_seconds": rounds, "steady_round_s": steady,
            "startup_s": wall - steady * len(rounds), "load": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--before", type=Path, help="another checkout to alternate with (ratio = before / after)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args()
    trees = {"after": REPO_ROOT} | ({"before": args.before.resolve()} if args.before else {})
    runs: dict[str, list[dict]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory(prefix="fedkd-startup-") as tmp:
        for i in range(args.repeats):
            for name, tree in sorted(trees.items(), reverse=True):  # "before" first in every pair
                run = one_run(tree, args.set, Path(tmp) / f"{name}-{i}")
                runs[name].append(run)
                say(f"{name}: command {run['wall_s']:.1f} s, round 1 {run['round_seconds'][0]:.1f} s, later rounds "
                    f"{run['steady_round_s']:.2f} s -> start-up {run['startup_s']:.1f} s (load {run['load']:.2f})")
    startup = {name: median(r["startup_s"] for r in rs) for name, rs in runs.items()}
    if args.before:
        ratio, goal = startup["before"] / startup["after"], None
    else:
        ratio, goal = startup["after"], GOAL_SECONDS
    finish("startup", ratio, goal, met=None if goal is None else ratio <= goal,
           startup_s=startup, runs=runs, sets=args.set)


if __name__ == "__main__":
    main()

"""Does KnFu's self share matter only in round 1? (issue 19, session 15; validation split)

`knfu.self_share = s` keeps s of a client's own answer in its targets in every round. It was chosen because,
under strong label skew, a client is often the only one that knows its classes in round 1
(docs/algorithms.md), and it costs some global accuracy. If round 1 were the whole story, a share that
applies only early would keep the local gain and give the global accuracy back. This study runs the
default rule with the share limited by round, next to the default, the peers-only rule and FedMD, on
Fashion-MNIST at Dirichlet α = 0.1 and α = 0.5, on the validation split:

    .venv/bin/python experiments/self_share_schedule.py run [--seeds 0,1,2]   # ~45 s a run, 42 runs
    .venv/bin/python experiments/self_share_schedule.py table

Schedules (the share s_t in round t): ``all`` (s, the run default), ``r1`` (s in round 1, then 0),
``decay`` (s / t). A schedule is not a run setting: this script sets the share per round on the server
side of the simulation (the server fuses in this process, as ``knfu_targets.py`` also relies on), through
the registered KnFu settings' ``fuse_kwargs``. Everything else is a plain ``fedkd simulate`` run of
``experiments/configs/fashion.toml`` under ``knfu_study.py``'s protocol. Ledger:
``experiments/results/knfu_self_share_schedule.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import knfu_study as study  # noqa: E402

from fedkd.config import load_config  # noqa: E402
from fedkd.fusion import KnfuSettings  # noqa: E402

LEDGER = study.RESULTS / "knfu_self_share_schedule.jsonl"
RUNS = study.RUNS / "self_share_schedule"
SETTINGS = {"fashion-dir0.1-val": {"partition": "dirichlet", "alpha": 0.1, "eval_split": "val"},
            "fashion-dir0.5-val": {"partition": "dirichlet", "alpha": 0.5, "eval_split": "val"}}
SCHEDULES = {"all": lambda s, t: s, "r1": lambda s, t: s if t == 1 else 0.0, "decay": lambda s, t: s / t}
KNFU = {k: v for k, v in study.EDGE_VARIANTS["knfu-rel50-b0.25-ss10"].items() if k != "knfu.self_share"}
# label: (overrides, schedule of knfu.self_share)
VARIANTS = {"fedmd": ({"algorithm": "fedmd"}, None),
            "knfu-rel50-b0.25": ({**KNFU, "knfu.self_share": 0.0}, None),
            **{f"ss{int(s * 100):02d}": ({**KNFU, "knfu.self_share": s}, "all") for s in (0.05, 0.1, 0.15)},
            "ss10-r1": ({**KNFU, "knfu.self_share": 0.1}, "r1"),
            "ss25-r1": ({**KNFU, "knfu.self_share": 0.25}, "r1"),
            "ss10-decay": ({**KNFU, "knfu.self_share": 0.1}, "decay")}
DEFAULT = "ss10"  # the run default (knfu.self_share = 0.1 in every round)


class RoundSchedule:
    """Sets the self share of each round's fusion: the server's fuse call reads it from the KnFu settings."""

    def __init__(self) -> None:
        self.schedule, self.round = None, 1
        self._fuse_kwargs = KnfuSettings.fuse_kwargs
        self._accept = None

    def __enter__(self) -> "RoundSchedule":
        from server.strategy import KnowledgeFusion

        schedule, accept, fuse_kwargs = self, KnowledgeFusion.accept, self._fuse_kwargs

        def scheduled_accept(strategy, server_round, accepted):
            schedule.round = server_round
            return accept(strategy, server_round, accepted)

        def scheduled_kwargs(settings, client_ids):
            kwargs = fuse_kwargs(settings, client_ids)
            if schedule.schedule is not None:
                kwargs["self_share"] = SCHEDULES[schedule.schedule](kwargs["self_share"], schedule.round)
            return kwargs

        self._accept = accept
        KnowledgeFusion.accept, KnfuSettings.fuse_kwargs = scheduled_accept, scheduled_kwargs
        return self

    def __exit__(self, *exc) -> None:
        from server.strategy import KnowledgeFusion

        KnowledgeFusion.accept, KnfuSettings.fuse_kwargs = self._accept, self._fuse_kwargs


def load() -> list[dict]:
    return [json.loads(x) for x in LEDGER.read_text().splitlines() if x.strip()] if LEDGER.exists() else []


def run(seeds: list[int]) -> None:
    from fedkd.cli.simulation import run_simulation

    done = {r["name"] for r in load()}
    LEDGER.parent.mkdir(parents=True, exist_ok=True)
    with RoundSchedule() as rounds:
        for setting, seed, label in ((s, seed, v) for s in SETTINGS for seed in seeds for v in VARIANTS):
            name = f"{setting}-{label}-s{seed}"
            if name in done:
                continue
            overrides, rounds.schedule = VARIANTS[label]
            overrides = {**study.PROTOCOL, **SETTINGS[setting], **overrides, "seed": seed}
            overrides.pop("dataset")
            cfg = load_config(study.FASHION, [f"{k}={v}" for k, v in overrides.items()])
            out = RUNS / name
            if out.exists():  # a run interrupted before it reached the ledger
                shutil.rmtree(out)
            started = time.perf_counter()
            summary = run_simulation(cfg, out, progress=False)
            row = {"name": name, "setting": setting, "variant": label, "seed": seed,
                   "schedule": rounds.schedule, "seconds": time.perf_counter() - started,
                   **study.measure(out, overrides, summary)}
            with open(LEDGER, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{name}: ALMA {row['alma']:.4f} global {row['global_acc']:.4f}", flush=True)


def table() -> str:
    """KnFu − FedMD per variant and setting: mean (per-seed values), in points."""
    runs = defaultdict(dict)
    for r in load():
        runs[(r["setting"], r["variant"])][r["seed"]] = (100 * r["alma"], 100 * r["global_acc"])
    lines = ["| setting | variant | schedule | ALMA | − FedMD ALMA (per seed) | − FedMD global (per seed) |",
             "|---|---|---|---|---|---|"]
    for setting in SETTINGS:
        fedmd = runs[(setting, "fedmd")]
        for label, (overrides, schedule) in VARIANTS.items():
            mine = runs.get((setting, label), {})
            seeds = sorted(set(mine) & set(fedmd))
            if label == "fedmd" or not seeds:
                continue
            da = [mine[s][0] - fedmd[s][0] for s in seeds]
            dg = [mine[s][1] - fedmd[s][1] for s in seeds]
            share = overrides.get("knfu.self_share", 0.0)
            what = "peers only" if share == 0 else f"s = {share:g}, {schedule}" + (" (default)" if label == DEFAULT else "")
            lines.append(f"| {setting} | {label} | {what} | {np.mean([mine[s][0] for s in seeds]):.2f} | "
                         f"{np.mean(da):+.2f} ({', '.join(f'{x:+.2f}' for x in da)}) | "
                         f"{np.mean(dg):+.2f} ({', '.join(f'{x:+.2f}' for x in dg)}) |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("run", "table"))
    parser.add_argument("--seeds", default="0,1,2")
    args = parser.parse_args()
    if args.what == "run":
        run([int(s) for s in args.seeds.split(",")])
    print(table())


if __name__ == "__main__":
    main()

"""Cold start: what a deployed ClientApp pays every round before it trains.

In a deployment (``fedkd federation``, Docker) Flower 1.39's SuperNode starts a fresh ``flwr-clientapp``
process for every message, so each client-round begins with Python's imports, the dataset load and
partitioning, and torch's first optimiser (which imports ``torch._dynamo``). This script runs that
sequence in fresh processes (``--repeats`` of them, default config unless ``--set``) and times each
step, then one more warm round in the same process for comparison.

    .venv/bin/python experiments/bench/cold_start.py                 # 3 fresh processes (~20 s)
    .venv/bin/python experiments/bench/cold_start.py --set dataset=fashion-mnist

ratio = cold client-round (imports + data + first round) / warm client-round; no goal (it is a profile).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import _common  # noqa: F401  (sys.path and environment)
from _common import REPO_ROOT, finish, median, say

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import clients.app  # what flwr-clientapp loads: the ClientApp and everything it imports
t1 = time.perf_counter()
import torch
torch.set_num_threads(1)
from clients.node import load_node
from fedkd.client_step import client_step, new_client_model
from fedkd.config import make_config
cfg = make_config(json.loads(sys.argv[1]))
inputs = load_node(cfg, {"partition-id": 0}).inputs  # the dataset, partition and transfer set, as a node
t2 = time.perf_counter()
model, _ = new_client_model(cfg.training, 0, inputs.input_shape, inputs.num_classes)
cpu = torch.device("cpu")
step = dict(targets=None, releases=0, device=cpu)
client_step(cfg.training, cfg.privacy, inputs, model, round_num=1, **step)
t3 = time.perf_counter()
client_step(cfg.training, cfg.privacy, inputs, model, round_num=2, **step)
t4 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "data_s": t2 - t1, "first_round_s": t3 - t2, "warm_round_s": t4 - t3,
                  "modules": sorted(m for m in ("sklearn", "dp_accounting", "scipy", "matplotlib", "torch._dynamo")
                                    if m in sys.modules)}))
"""


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    from fedkd.config import parse_assignments

    overrides = parse_assignments(args.sets)
    runs = []
    for rep in range(args.repeats):
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(overrides)], cwd=REPO_ROOT,
                              capture_output=True, text=True, check=True)
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        say(f"process {rep}: " + ", ".join(f"{k} {v:.2f}" for k, v in runs[-1].items() if k.endswith("_s")))
    steps = {k: round(median([r[k] for r in runs]), 3) for k in ("import_s", "data_s", "first_round_s", "warm_round_s")}
    cold = steps["import_s"] + steps["data_s"] + steps["first_round_s"]
    return finish("cold_start", cold / steps["warm_round_s"], None, cold_client_round_s=round(cold, 3), **steps,
                  modules_loaded=runs[-1]["modules"], repeats=args.repeats, config_overrides=args.sets)


if __name__ == "__main__":
    main()

"""GPU benchmark: client-round throughput on one GPU shared by K concurrent clients vs the CPU.

Flower's simulation gives each virtual client ``num_gpus`` of a GPU (``sim.client_gpus``, e.g. 0.25 lets
Ray run 4 client actors on one GPU at once). This script measures what that buys without Flower or Ray
(the device machine has neither): K worker processes each run whole client rounds
(``fedkd.client_step.client_step``: digest on the transfer set, revisit on private data, evaluation,
prediction, the upload; inputs as a simulated node assembles them, ``clients.node.load_node``) for their share of the clients, all on one GPU -- the same concurrency K actors with
``num_gpus = 1/K`` produce -- and the same K processes on the CPU with one torch thread each (what Ray
gives an actor with ``num_cpus = 1``). Throughput is client-rounds per second, start-up excluded.

    .venv/bin/python experiments/bench/gpu.py                       # CUDA when present, else CPU only
    .venv/bin/python experiments/bench/gpu.py --workers 1,4,8 --rounds 3 --models cnn_medium
    .venv/bin/python experiments/bench/gpu.py --dataset fashion-mnist --models cnn_small --workers 1,4,8   # the goal's setting

ratio = best GPU throughput / best CPU throughput over the worker counts tried. Without CUDA the GPU
rows are skipped and ratio is null (the script still checks the CPU path end to end).
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import time

import _common  # noqa: F401  (sys.path and environment)
from _common import finish, say

GOAL_RATIO = 10.0  # the target for the Fashion-MNIST CNN setting: ten times the CPU's client throughput


def _worker(device_name: str, cfg_overrides: dict, client_ids: list[int], rounds: int,
            ready, start, results) -> None:
    """Run ``rounds`` timed client rounds (after one warm-up round) for ``client_ids`` on one device."""
    import warnings

    import numpy as np
    import torch

    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    from clients.node import load_node
    from fedkd.client_step import client_step, new_client_model
    from fedkd.config import make_config

    torch.set_num_threads(1)  # like a Ray actor with num_cpus=1
    cfg = make_config(cfg_overrides)
    training, privacy = cfg.training, cfg.privacy
    device = torch.device(device_name)
    inputs = {cid: load_node(cfg, {"partition-id": cid}).inputs for cid in client_ids}
    m, c = len(next(iter(inputs.values())).transfer_x), next(iter(inputs.values())).num_classes
    targets = np.random.default_rng(0).dirichlet(np.ones(c), size=m).astype(np.float32)  # steady state: digest
    models = {cid: new_client_model(training, cid, inputs[cid].input_shape, inputs[cid].num_classes)[0].to(device)
              for cid in client_ids}

    def one_round(rnd: int) -> None:
        for cid in client_ids:
            client_step(training, privacy, inputs[cid], models[cid], round_num=rnd, targets=targets, releases=0,
                        device=device)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    one_round(0)  # warm-up: CUDA context, cuDNN autotuning, allocator
    ready.put(os.getpid())
    start.wait()
    began = time.perf_counter()
    for rnd in range(1, rounds + 1):
        one_round(rnd)
    results.put((time.perf_counter() - began, len(client_ids) * rounds))


def measure(device_name: str, workers: int, clients: int, rounds: int, cfg_overrides: dict) -> dict:
    """Client-rounds per second with ``workers`` processes sharing ``clients`` clients on one device."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in forked children
    ready, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    shares = [list(range(clients))[k::workers] for k in range(workers)]
    procs = [ctx.Process(target=_worker, args=(device_name, cfg_overrides, share, rounds, ready, start, results))
             for share in shares if share]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            ready.get(timeout=600)
        began = time.perf_counter()
        start.set()
        done = [results.get(timeout=1800) for _ in procs]
        wall = time.perf_counter() - began
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    client_rounds = sum(n for _, n in done)
    return {"device": device_name, "workers": len(procs), "client_rounds": client_rounds,
            "wall_s": round(wall, 3), "client_rounds_per_s": round(client_rounds / wall, 3)}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", default="1,4,8", help="concurrent client processes K (comma-separated)")
    parser.add_argument("--clients", type=int, default=16, help="clients per measurement")
    parser.add_argument("--rounds", type=int, default=2, help="timed rounds per client")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--models", default="cnn_small,mlp", help="architectures, cycled over clients")
    parser.add_argument("--cpu-workers", default=None, help="worker counts for the CPU (default: --workers "
                        "capped at the CPU count)")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                        help="any other fedkd config key, e.g. --set revisit_epochs=2")
    args = parser.parse_args(argv)

    import torch

    from fedkd.config import parse_assignments

    cfg = dict(dataset=args.dataset, models=args.models, num_clients=args.clients, device="cpu")
    cfg.update(parse_assignments(args.sets))
    workers = [int(k) for k in args.workers.split(",") if k.strip()]
    cpus = os.cpu_count() or 1
    cpu_workers = ([int(k) for k in args.cpu_workers.split(",")] if args.cpu_workers
                   else sorted({min(k, cpus) for k in workers}))
    has_cuda = torch.cuda.is_available()
    say(f"CUDA: {torch.cuda.get_device_name(0) if has_cuda else 'not available'}; {cpus} CPUs; config {cfg}")

    rows = []
    for k in cpu_workers:
        rows.append(measure("cpu", k, args.clients, args.rounds, cfg))
        say(rows[-1])
    if has_cuda:
        for k in workers:
            rows.append(measure("cuda:0", k, args.clients, args.rounds, dict(cfg, device="cuda:0")))
            say(rows[-1])
    best = {dev: max((r["client_rounds_per_s"] for r in rows if r["device"].startswith(dev)), default=None)
            for dev in ("cpu", "cuda")}
    ratio = best["cuda"] / best["cpu"] if best["cuda"] else float("nan")
    return finish("gpu", ratio, GOAL_RATIO, cuda=has_cuda,
                  gpu_name=torch.cuda.get_device_name(0) if has_cuda else None,
                  best_cpu_client_rounds_per_s=best["cpu"], best_gpu_client_rounds_per_s=best["cuda"],
                  config=cfg, rounds=args.rounds, rows=rows)


if __name__ == "__main__":
    main()

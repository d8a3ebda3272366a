"""Profile the ClientApp's train handler in this process (no Ray): where does a client round go?

Drives ``clients.app.app`` exactly as the simulation does -- one Message and the node's Context per call,
the Context carried from round to round -- for every client and round, under pyinstrument, and prints
the share of the handler spent outside ``client_step`` (the Flower/record plumbing a bare loop avoids).

    .venv/bin/python experiments/bench/profile_client.py --clients 4 --rounds 3 [--html /tmp/client.html]
"""
from __future__ import annotations

import argparse
import time

import _common  # noqa: F401  (sys.path and environment)
from _common import finish, say


def drive(cfg, rounds: int) -> tuple[float, float]:
    """Run the handler for every client and round; return (handler seconds, client_step seconds)."""
    import numpy as np
    from flwr.app import Context, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from clients import app as client_module
    from clients import train as train_module
    from clients.node import load_node
    from fedkd import protocol
    from fedkd.config import compact_run_config

    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 1
    node = load_node(cfg, {"partition-id": 0})  # every node of a run has the same transfer set
    n, m, c = cfg["num_clients"], len(node.inputs.transfer_x), node.inputs.num_classes
    client_config = compact_run_config(cfg.for_clients())  # what the server's messages carry
    contexts = [Context(run_id=1, node_id=i + 1, node_config={"partition-id": i}, state=RecordDict(),
                        run_config={}) for i in range(n)]
    inner = {"s": 0.0}
    original = train_module.client_step

    def timed_client_step(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            inner["s"] += time.perf_counter() - start

    train_module.client_step = timed_client_step
    targets = np.random.default_rng(0).dirichlet(np.ones(c), size=m).astype(np.float32)
    total = 0.0
    try:
        for rnd in range(1, rounds + 1):
            for i, ctx in enumerate(contexts):
                content = protocol.build_train_content(rnd, cfg["temperature"], node.fingerprint, client_config,
                                                       targets if rnd > 1 else None, cfg.wire)
                msg = protocol.build_train_message(i + 1, content)
                start = time.perf_counter()
                client_module.app(msg, ctx)
                total += time.perf_counter() - start
    finally:
        train_module.client_step = original
    return total, inner["s"]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--html", help="also write pyinstrument's HTML report here")
    parser.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)

    import torch
    from pyinstrument import Profiler

    from fedkd.config import make_config, parse_assignments

    torch.set_num_threads(1)  # what a Ray actor with num_cpus=1 gets
    cfg = make_config(dict(parse_assignments(args.sets), num_clients=args.clients, save_models=False))
    drive(cfg, 1)  # warm caches (dataset, federation, imports) outside the profile
    profiler = Profiler(interval=0.002)
    profiler.start()
    total, inner = drive(cfg, args.rounds)
    profiler.stop()
    say(profiler.output_text(unicode=False, color=False, show_all=False))
    if args.html:
        with open(args.html, "w") as fh:
            fh.write(profiler.output_html())
    overhead = total / inner if inner else float("nan")
    return finish("profile_client", overhead, 1.05, handler_s=round(total, 3), client_step_s=round(inner, 3),
                  client_rounds=args.clients * args.rounds)


if __name__ == "__main__":
    main()

"""CPU cost of one tick of the simulation engine's hand-out loop: Flower 1.39's vs server/handout.py's.

Every 0.1 s Flower's simulation thread asks the link state for one message per registered node
(``get_message_ins(node_id, limit=1)``), and each call walks every stored message: a tick costs
nodes x stored messages. server/handout.py walks the stored messages once. This builds a real
Flower in-memory link state with ``--clients`` registered nodes and ``--stored`` messages to
``--sampled`` of them (the in-flight window of a sampled round), delivers them, and times the
steady-state ticks (nothing left to hand out: what the thread does for most of a round) in CPU time.

    python experiments/bench/handout.py --clients 1000,10000 --sampled 100 --stored 32

ratio = one-pass tick / Flower's tick at the largest size (goal <= 0.1). CPU time, so a busy
machine changes it less than wall time would; still, say the load.
"""
from __future__ import annotations

import argparse
import random
import time

import _common  # noqa: F401  (quiet Flower, repo on sys.path)
from _common import finish, median, say


def link_state(num_nodes: int, destinations: list[int]):
    """A Flower in-memory link state as the simulation builds it, with messages stored through the grid."""
    from flwr.app import Message, RecordDict
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.proto.task_pb2 import Task  # pylint: disable=E0611
    from flwr.server.superlink.fleet.vce.vce_api import _register_nodes
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity
    from flwr.superlink.federation import NoOpFederationManager
    from flwr.superlink.grid import InMemoryGrid

    factory = LinkStateFactory(FLWR_IN_MEMORY_DB_NAME, NoOpFederationManager(), ObjectStoreFactory())
    mapping = _register_nodes(num_nodes, factory)
    state = factory.state()
    run = Run.create_empty(run_id=7)
    run.primary_task_id = 11
    run.federation_id = NOOP_FEDERATION_ID
    state.run_ids[run.run_id] = RunRecord(run=run)
    state.task_store[11] = Task(task_id=11, run_id=run.run_id)
    grid = InMemoryGrid(state_factory=factory)
    grid.set_run(run)
    nodes = list(mapping)
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 11, run.run_id, SUPERLINK_NODE_ID  # as the ServerApp's runtime
    messages = [Message(RecordDict(), nodes[d], "train", group_id="1") for d in destinations]
    for m in messages:  # what the ServerApp's runtime stamps on each message
        m.metadata.__dict__["_run_id"] = run.run_id
    if len(grid.push_messages(messages)) != len(messages):
        raise RuntimeError("the link state refused messages (see Flower's log above)")
    return state, mapping


def flower_tick(state, mapping) -> int:
    return sum(len(state.get_message_ins(node_id=n, limit=1)) for n in mapping)


def cpu_per_tick(tick, ticks: int) -> float:
    start = time.process_time()
    for _ in range(ticks):
        tick()
    return (time.process_time() - start) / ticks


def measure(clients: int, sampled: int, stored: int, ticks: int, repeats: int) -> dict:
    from server.handout import take_one_per_node

    rng = random.Random(0)
    chosen = rng.sample(range(clients), sampled)
    destinations = [chosen[i % sampled] for i in range(stored)]
    state, mapping = link_state(clients, destinations)
    position = {n: i for i, n in enumerate(mapping)}
    handed = len(take_one_per_node(state, position))  # deliver what is stored: the round's messages are in flight
    assert handed == min(stored, sampled), handed
    flower = median(cpu_per_tick(lambda: flower_tick(state, mapping), ticks) for _ in range(repeats))
    ours = median(cpu_per_tick(lambda: take_one_per_node(state, position), ticks) for _ in range(repeats))
    row = {"clients": clients, "sampled": sampled, "stored": stored, "handed_out_first_tick": handed,
           "flower_tick_ms": round(flower * 1e3, 4), "one_pass_tick_ms": round(ours * 1e3, 4),
           "flower_cpu_share_at_0.1s": round(flower / 0.1, 4), "ratio": round(ours / flower, 5)}
    say(f"{clients} registered, {stored} stored: Flower's tick {flower * 1e3:.2f} ms CPU "
        f"({flower / 0.1:.0%} of a core at one tick per 0.1 s), one pass {ours * 1e3:.3f} ms")
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", default="1000,10000", help="comma-separated registered node counts")
    ap.add_argument("--sampled", type=int, default=100)
    ap.add_argument("--stored", type=int, default=32, help="messages stored at once (the in-flight window)")
    ap.add_argument("--ticks", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    sizes = [int(c) for c in args.clients.split(",")]
    rows = [measure(n, min(args.sampled, n), args.stored, args.ticks, args.repeats) for n in sizes]
    finish("handout", rows[-1]["ratio"], 0.1, rows=rows)


if __name__ == "__main__":
    main()

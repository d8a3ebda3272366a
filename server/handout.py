"""One pass over the stored messages per tick: Flower's simulation hand-out loop, made O(messages).

Flower 1.39's simulation engine hands stored messages to the client actors from a thread
(``vce_api.add_messages_to_queue``) that, every 0.1 s, asks the link state for one message
*per registered node* (``InMemoryLinkState.get_message_ins(node_id, limit=1)``), and each of
those calls walks every stored message under the state lock. A tick therefore costs
nodes x messages: with 10,000 registered clients of which 100 are sampled it is the largest
cost of the driver (docs/performance.md), although only the sampled nodes have anything to take.

:func:`add_messages_to_queue` does the same work in one pass over the stored messages: it
drops expired messages exactly as Flower does, takes for every node the first undelivered
message addressed to it (one per node per tick, as Flower's ``limit=1``), marks them delivered
and queues them in the nodes' registration order, as Flower does. :func:`install` replaces
Flower's function for the exact Flower version it was written for and leaves any other version
alone (with a warning); ``tests/test_handout.py`` fails loudly when the installed Flower's loop
is not the one this replaces. The same change as an upstream patch: docs/flower-handout.patch.

The engine's other two loops (``vce_api.worker``, which hands messages to the actors, and
``vce_api.put_message_into_state``) wait on their queues with a 1 s timeout between looks at the stop
event, so a simulation ends up to a second after its ServerApp returned. :func:`install` hands them
their queues behind :class:`PromptQueue`, which only shortens that wait (``STOP_POLL_SECONDS``): the
messages, their order and the work done are Flower's own.
"""
from __future__ import annotations

import logging
import threading
from queue import Queue

from fedkd.flower_pin import FLOWER_VERSION, sources_sha256

log = logging.getLogger("fedkd.server")

# The sources this replacement was written against (fedkd/flower_pin.py: a changed loop or store is noticed).
FLOWER_SOURCES_SHA256 = {
    "vce_api.add_messages_to_queue": "953f4bd41a931a7779a4a670ab17b633f6e20b08a0128535328674466419777a",
    "InMemoryLinkState.get_message_ins": "6547c8dcbc62e12f5b2aa5c69f4de8c7c7072c10d6c0876512cf37197d941056",
    "vce_api.worker": "60f308688ba34fb5bc942ac68c1d97be61b2010e8d4c3983833f646c5c038157",
    "vce_api.put_message_into_state": "3622eb5bfcd9cd1a4cef3b1d5b8250a07af41a9439ea0379e0459d62e6fa5b35",
}


def _flower_functions() -> dict:
    from flwr.server.superlink.fleet.vce import vce_api
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

    return {"vce_api.add_messages_to_queue": vce_api.add_messages_to_queue,
            "InMemoryLinkState.get_message_ins": InMemoryLinkState.get_message_ins,
            "vce_api.worker": vce_api.worker, "vce_api.put_message_into_state": vce_api.put_message_into_state}


def flower_sources_sha256() -> dict[str, str]:
    """sha256 of the installed Flower's hand-out loop and message lookup (what this module replaces)."""
    funcs = {name: _ORIGINAL.get(name, f) for name, f in _flower_functions().items()}  # installed: the originals
    return sources_sha256(funcs)


def matches_installed_flower() -> bool:
    """Whether the installed Flower is the version (and the sources) this replacement was written for."""
    import flwr

    return flwr.__version__ == FLOWER_VERSION and flower_sources_sha256() == FLOWER_SOURCES_SHA256


def take_one_per_node(state, position: dict[int, int]) -> list:
    """Undelivered messages, at most one per node of ``position`` (node id -> registration index).

    The messages are marked delivered and returned in registration order of their nodes.
    Same result as Flower 1.39's per-node ``get_message_ins(node_id, limit=1)`` over all nodes.
    """
    from flwr.common import now

    picked: dict[int, object] = {}
    with state.lock:
        state._check_stored_messages(set(state.message_ins_store))  # drops expired ones, as Flower does per call
        for msg in state.message_ins_store.values():  # insertion order: a node's oldest message first
            node = msg.metadata.dst_node_id
            if node in position and node not in picked and msg.metadata.delivered_at == "":
                picked[node] = msg
        delivered_at = now().isoformat()
        for msg in picked.values():
            msg.metadata.delivered_at = delivered_at
    return [picked[n] for n in sorted(picked, key=position.__getitem__)]


def add_messages_to_queue(state, queue: Queue, nodes_mapping: dict, f_stop: threading.Event) -> None:
    """Drop-in for Flower 1.39's ``vce_api.add_messages_to_queue``: one pass over stored messages a tick."""
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

    if not isinstance(state, InMemoryLinkState):  # another store: its own lookup is the only one we know
        return _ORIGINAL["vce_api.add_messages_to_queue"](state, queue, nodes_mapping, f_stop)
    position = {node_id: i for i, node_id in enumerate(nodes_mapping.keys())}
    while not f_stop.is_set():
        for msg in take_one_per_node(state, position):
            queue.put(msg)
        f_stop.wait(TICK_SECONDS)


class PromptQueue:
    """A queue whose ``get`` waits at most ``STOP_POLL_SECONDS`` at a time (what the loop then does is unchanged).

    Flower's loops call ``queue.get(timeout=1.0)`` and look at their stop event after each timeout; an
    empty ``get`` that returns sooner only makes them look more often.
    """

    def __init__(self, queue: Queue):
        self._queue = queue

    def get(self, block: bool = True, timeout: float | None = None):
        return self._queue.get(block, STOP_POLL_SECONDS if timeout is None else min(timeout, STOP_POLL_SECONDS))


def worker(messageins_queue: Queue, messageres_queue: Queue, *args) -> None:
    """Flower 1.39's ``vce_api.worker``, seeing the stop event within ``STOP_POLL_SECONDS`` of it being set."""
    _ORIGINAL["vce_api.worker"](PromptQueue(messageins_queue), messageres_queue, *args)


def put_message_into_state(state, queue: Queue, f_stop: threading.Event) -> None:
    """Flower 1.39's ``vce_api.put_message_into_state``, seeing the stop event within ``STOP_POLL_SECONDS``."""
    _ORIGINAL["vce_api.put_message_into_state"](state, PromptQueue(queue), f_stop)


_ORIGINAL: dict = {}  # Flower's functions that install() replaced, by the names of FLOWER_SOURCES_SHA256
# How long an idle engine thread waits before it looks at the stop event again (Flower: 1 s, paid once per run).
STOP_POLL_SECONDS = 0.02
# Flower waits 0.1 s between passes, so a round's messages wait 0.05 s on average before an actor sees them:
# a third of the 0.15 s of framework in a digits round. A pass here walks only the messages in flight (at most
# server.max_in_flight), so a pass every 10 ms costs next to nothing (docs/performance.md §10).
TICK_SECONDS = 0.01


def install() -> bool:
    """Replace Flower's hand-out loop in this process if the installed Flower is the one it was written for.

    Returns whether it is installed. Idempotent.
    """
    from flwr.server.superlink.fleet.vce import vce_api

    if vce_api.add_messages_to_queue is add_messages_to_queue:
        return True
    if not matches_installed_flower():
        log.warning("Flower's simulation engine loops are not the ones server/handout.py was written for "
                    "(Flower %s); keeping Flower's own (slow at many registered clients)", FLOWER_VERSION)
        return False
    for name, ours in (("add_messages_to_queue", add_messages_to_queue), ("worker", worker),
                       ("put_message_into_state", put_message_into_state)):
        _ORIGINAL[f"vce_api.{name}"] = getattr(vce_api, name)
        setattr(vce_api, name, ours)
    return True

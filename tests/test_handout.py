"""Run-time replacements of Flower code (server/handout.py, server/client_actor.py): written for one Flower version, same results as Flower's."""
from __future__ import annotations

import threading
from queue import Queue

import pytest

from server import handout


def test_installed_flower_is_the_one_the_handout_replacement_was_written_for():
    import flwr

    assert flwr.__version__ == handout.FLOWER_VERSION, (
        f"server/handout.py replaces Flower {handout.FLOWER_VERSION}'s simulation hand-out loop, but Flower "
        f"{flwr.__version__} is installed: re-read vce_api.add_messages_to_queue and "
        "InMemoryLinkState.get_message_ins, port the replacement and update FLOWER_VERSION/FLOWER_SOURCES_SHA256")
    assert handout.flower_sources_sha256() == handout.FLOWER_SOURCES_SHA256, (
        "Flower's hand-out loop or message lookup changed since server/handout.py was written: re-read them, "
        "port the replacement and update FLOWER_SOURCES_SHA256")
    assert handout.install()
    from flwr.server.superlink.fleet.vce import vce_api

    assert vce_api.add_messages_to_queue is handout.add_messages_to_queue


def _link_state_with_messages(num_nodes: int, destinations: list[int]):
    """A real Flower in-memory link state as the simulation builds it, with messages stored through the grid."""
    from flwr.app import Message, RecordDict
    from flwr.proto.task_pb2 import Task  # pylint: disable=E0611
    from flwr.server.superlink.fleet.vce.vce_api import _register_nodes
    from flwr.server.superlink.linkstate import LinkStateFactory
    from flwr.server.superlink.linkstate.in_memory_linkstate import RunRecord
    from flwr.supercore.constant import FLWR_IN_MEMORY_DB_NAME, NOOP_FEDERATION_ID
    from flwr.supercore.object_store import ObjectStoreFactory
    from flwr.supercore.run import Run
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
    messages = [Message(RecordDict(), nodes[d], "train", group_id="1") for d in destinations]
    for m in messages:  # what the ServerApp's runtime stamps on each message (TaskIdentity.run_id)
        m.metadata.__dict__["_run_id"] = run.run_id
    ids = grid.push_messages(messages)
    assert len(ids) == len(destinations)
    return state, mapping


@pytest.mark.parametrize("destinations", [[5, 0, 5, 3, 0, 0, 9], [2], []])
def test_one_pass_hands_out_what_flowers_per_node_lookup_hands_out(destinations):
    ours_state, ours_map = _link_state_with_messages(12, destinations)
    theirs_state, theirs_map = _link_state_with_messages(12, destinations)
    index = {n: i for i, n in enumerate(ours_map)}
    theirs_index = {n: i for i, n in enumerate(theirs_map)}
    position = {n: i for i, n in enumerate(ours_map)}
    for _tick in range(4):  # one message per node per tick, until all are handed out
        ours = handout.take_one_per_node(ours_state, position)
        theirs = [m for n in theirs_map for m in theirs_state.get_message_ins(node_id=n, limit=1)]
        assert [index[m.metadata.dst_node_id] for m in ours] == [theirs_index[m.metadata.dst_node_id] for m in theirs]
        assert all(m.metadata.delivered_at != "" for m in ours)
    assert sum(m.metadata.delivered_at == "" for m in ours_state.message_ins_store.values()) == 0


def test_the_loop_queues_messages_and_stops():
    state, mapping = _link_state_with_messages(6, [1, 4, 1])
    queue: Queue = Queue()
    stop = threading.Event()
    th = threading.Thread(target=handout.add_messages_to_queue, args=(state, queue, mapping, stop))
    th.start()
    got = [queue.get(timeout=5) for _ in range(3)]
    stop.set()
    th.join(timeout=5)
    assert not th.is_alive()
    assert sorted(list(mapping).index(m.metadata.dst_node_id) for m in got) == [1, 1, 4]


def test_the_engine_loops_see_their_stop_event_after_a_short_wait_and_pass_every_message_on():
    """Flower's result loop, as installed, waits on its queue at most STOP_POLL_SECONDS at a time (Flower: 1 s)."""
    assert handout.install()
    from flwr.server.superlink.fleet.vce import vce_api

    waits: list = []

    class RecordingQueue(Queue):
        def get(self, block=True, timeout=None):
            waits.append(timeout)
            return super().get(block, timeout)

    class State:  # what the loop calls on Flower's link state
        def __init__(self):
            self.stored = []

        def store_message_res(self, message):
            self.stored.append(message)

    state, queue, stop = State(), RecordingQueue(), threading.Event()
    th = threading.Thread(target=vce_api.put_message_into_state, args=(state, queue, stop))
    th.start()
    for item in ("reply-1", "reply-2"):
        queue.put(item)
    while len(state.stored) < 2 and th.is_alive():
        threading.Event().wait(0.01)
    stop.set()
    th.join(timeout=30)
    assert not th.is_alive()
    assert state.stored == ["reply-1", "reply-2"]
    assert waits and all(w is not None and w <= handout.STOP_POLL_SECONDS for w in waits)


def test_installed_flower_is_the_one_the_client_actor_repeats():
    from flwr.server.superlink.fleet.vce.backend.raybackend import RayBackend

    from server import client_actor

    assert client_actor.matches_installed_flower(), (
        f"server/client_actor.py repeats Flower {client_actor.FLOWER_VERSION}'s ClientAppActor and RayBackend.build, "
        "which changed: re-read them, port ClientActor/build and update FLOWER_SOURCES_SHA256")
    assert client_actor.install() and client_actor.install()  # idempotent
    assert RayBackend.build is client_actor.build and client_actor.actor_type() is client_actor.ClientActor
    assert RayBackend.terminate is client_actor.terminate


def test_a_lone_actor_is_listed_twice_in_the_pool_and_several_actors_once():
    from types import SimpleNamespace

    from server import client_actor

    lone = SimpleNamespace(pool=["actor-a"], num_actors=1)
    client_actor.queue_behind_a_lone_actor(lone)
    assert lone.pool == ["actor-a"] * client_actor.TASKS_PER_LONE_ACTOR
    assert lone.num_actors == len(lone.pool)  # Flower runs one engine thread per entry
    client_actor.queue_behind_a_lone_actor(lone)  # a pool kept from an earlier run is not doubled again
    assert lone.pool == ["actor-a"] * client_actor.TASKS_PER_LONE_ACTOR
    several = SimpleNamespace(pool=["actor-a", "actor-b"], num_actors=2)
    client_actor.queue_behind_a_lone_actor(several)  # a message never waits behind another actor's
    assert several.pool == ["actor-a", "actor-b"] and several.num_actors == 2

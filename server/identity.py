"""Which node is which client: identity bound to the node, never to what a reply says.

A client id belongs to the node that proved it, and every reply and every target
goes through this binding:

* **simulation** -- the engine assigns each node its partition (``node_config``);
  the server reads that assignment from the engine itself (:func:`engine_assignment`),
  so a node's claim is only ever checked against it;
* **deployment with a registry** (``server.identity_registry``) -- a node proves an
  id by signing the identify query's nonce with the private key the registry lists
  for that id (``fedkd.node_identity``); a restarted node with the same key gets its id back;
* **deployment without a registry** -- trust on first use: an id is bound to the first
  live node that claims it; another node claiming it while that node lives is refused
  (the docs say what this cannot stop).

A node whose claim contradicts the binding raises an ``identity_mismatch`` alarm:
logged, counted, and the node gets nothing that belongs to another client.
"""
from __future__ import annotations

import logging
from collections import Counter

from flwr.serverapp import Grid

from fedkd import node_identity, protocol
from server import dispatch

log = logging.getLogger("fedkd.server")


def engine_assignment(grid: Grid) -> dict[int, int] | None:
    """{node id: partition id} as Flower's simulation engine assigned them; None outside simulation.

    The engine registers node i (node_config ``partition-id = i``) i-th in its in-memory link
    state, whose node table keeps insertion order (Flower 1.39, ``vce_api._register_nodes``);
    ``tests/test_identity.py`` checks this against the nodes' own node config.
    """
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    if not isinstance(grid, InMemoryGrid):
        return None
    return {node_id: i for i, node_id in enumerate(grid.state.nodes)}


class IdentityBook:
    """The binding node id <-> client id, and the alarms raised against it."""

    def __init__(self, num_clients: int, registry: dict | None = None, timeout: float = 60.0):
        self.num_clients = num_clients
        self.registry = registry
        self.timeout = timeout
        self.client_of: dict[int, int] = {}   # node id -> client id
        self.node_of: dict[int, int] = {}     # client id -> node id
        self.verified: set[int] = set()       # nodes whose own answer agreed with their binding
        self.answered: set[int] = set()       # nodes that answered the identify query (a node id is asked once)
        self.alarms: Counter = Counter()      # reason -> count, since the last take_alarms()
        self._engine: dict[int, int] | None = None

    # ------------------------------------------------------------------ binding
    def _bind(self, node_id: int, client_id: int) -> None:
        old = self.node_of.get(client_id)
        if old is not None and old != node_id:
            self.client_of.pop(old, None)  # the id's previous node is gone (restart): its binding moves
            self.verified.discard(old)
        self.client_of[node_id] = client_id
        self.node_of[client_id] = node_id

    def _alarm(self, reason: str, message: str, *args) -> None:
        log.warning("IDENTITY ALARM (%s): " + message, reason, *args)
        self.alarms[reason] += 1

    def take_alarms(self) -> Counter:
        alarms, self.alarms = self.alarms, Counter()
        return alarms

    def refresh(self, grid: Grid, live_nodes: list[int], clients: set[int] | None = None) -> None:
        """Bind the live nodes the book does not know yet.

        In simulation every node is bound from the engine at once, and the nodes of ``clients``
        (default: all) that have not answered yet are asked to identify themselves, as a check.
        Elsewhere every live node without a binding that has not answered yet is asked (once per node
        id: a restarted node has a new id and proves itself again).
        """
        if self._engine is None:
            self._engine = engine_assignment(grid)
        if self._engine is not None:
            for node_id in live_nodes:
                if node_id in self._engine and node_id not in self.client_of:
                    self._bind(node_id, self._engine[node_id])
            ask = [n for n in live_nodes if n not in self.answered
                   and (clients is None or self.client_of.get(n) in clients)]
        else:  # a refused node is not asked again: its key will not change while its node id lives
            ask = [n for n in live_nodes if n not in self.client_of and n not in self.answered]
        if ask:
            self._identify(grid, ask, set(live_nodes))

    def _identify(self, grid: Grid, node_ids: list[int], live: set[int]) -> None:
        nonces = {nid: node_identity.new_nonce() for nid in node_ids}
        messages = [protocol.build_identify_message(nid, nonces[nid]) for nid in node_ids]
        for reply in dispatch.send_and_receive(grid, messages, timeout=self.timeout):
            src = reply.metadata.src_node_id
            if src not in nonces:
                self._alarm("unexpected_sender", "identify answer from node %s, which was not asked", src)
                continue
            self.answered.add(src)
            try:
                answer = protocol.parse_identify_reply(reply, self.num_clients)
                self._judge(src, answer, nonces[src], live)
            except protocol.InvalidReply as exc:
                log.warning("node %s did not say which client it is: %s", src, exc)
            except Exception as exc:  # one node's answer never ends the run
                log.warning("node %s: identify answer could not be handled (%s: %s)", src, type(exc).__name__, exc)

    def _judge(self, node_id: int, answer: protocol.IdentifyAnswer, nonce: bytes, live: set[int]) -> None:
        claimed = answer.partition_id
        if self._engine is not None:
            truth = self._engine.get(node_id)
            if truth is None:
                self._alarm("identity_mismatch", "node %s is not one of the engine's nodes", node_id)
            elif claimed != truth:
                self._alarm("identity_mismatch", "node %s (client %d) answered the identify query as client %d; "
                            "it stays client %d", node_id, truth, claimed, truth)
            else:
                self.verified.add(node_id)
            return
        if self.registry is not None:
            key = self.registry.get(claimed)
            if key is None or answer.signature is None or not node_identity.verify(key, nonce, node_id,
                                                                               answer.signature):
                self._alarm("identity_mismatch", "node %s claims client %d without that client's key; "
                            "it gets nothing", node_id, claimed)
                return
            self._bind(node_id, claimed)
            self.verified.add(node_id)
            return
        owner = self.node_of.get(claimed)
        if owner is not None and owner != node_id and owner in live:
            self._alarm("identity_mismatch", "node %s claims client %d, which node %s holds; it gets nothing",
                        node_id, claimed, owner)
            return
        self._bind(node_id, claimed)
        self.verified.add(node_id)

    def check_claim(self, node_id: int, claimed: int) -> None:
        """A reply's claimed client id must be its sender's bound id (InvalidReply otherwise)."""
        bound = self.client_of.get(node_id)
        if bound is None:
            self._alarm("identity_mismatch", "a reply from node %s, which has no identity, claims client %d",
                        node_id, claimed)
            raise protocol.InvalidReply("identity_mismatch", f"node {node_id} has no bound client id")
        if claimed != bound:
            self._alarm("identity_mismatch", "node %s (client %d) sent a reply claiming client %d",
                        node_id, bound, claimed)
            raise protocol.InvalidReply("identity_mismatch", f"node {node_id} is client {bound}, "
                                        f"its reply claims {claimed}")

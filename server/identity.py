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
import time
from collections import Counter

from flwr.serverapp import Grid

from fedkd import node_identity, protocol
from fedkd.files import clip
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

    def __init__(self, num_clients: int, registry: dict | None = None, timeout: float = 60.0,
                 first_timeout: float = 0.0):
        self.num_clients = num_clients
        self.registry = registry
        self.timeout = timeout
        # While no node is bound a round could do nothing, so the wait for the first answer may last up to
        # first_timeout (server.node_wait_timeout): cold ClientApps (a Python start, torch's import, the
        # node's data) can take longer than identify_timeout on a loaded machine.
        self.first_timeout = max(timeout, first_timeout)
        self.client_of: dict[int, int] = {}   # node id -> client id
        self.node_of: dict[int, int] = {}     # client id -> node id
        self.verified: set[int] = set()       # nodes whose own answer agreed with their binding
        self.answered: set[int] = set()       # nodes that answered the identify query
        self.asked: set[int] = set()          # nodes sent the identify query (a node id is asked once)
        self._pending: dict[str, int] = {}    # identify message id -> node id, not answered yet
        self._nonces: dict[int, bytes] = {}   # node id -> the nonce it was asked to sign
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
        (default: all) that have not been asked yet are asked to identify themselves, as a check.
        Elsewhere every live node without a binding is asked, once per node id (a restarted node has a
        new id and proves itself again).

        Liveness: only newly asked nodes are waited for, at most ``timeout`` (server.identify_timeout),
        or, while no node at all is bound, up to ``first_timeout`` for the first answer and ``timeout`` more
        for the others; a node that stays silent costs that wait once, never again. Its answer, if it ever comes, is
        taken without waiting at a later refresh (the query stays pending at the SuperLink).
        """
        if self._engine is None:
            self._engine = engine_assignment(grid)
        live = set(live_nodes)
        for message_id in [m for m, n in self._pending.items() if n not in live]:  # gone: stop asking it
            self._nonces.pop(self._pending.pop(message_id), None)
        if self._pending:
            self._collect(grid, list(grid.pull_messages(list(self._pending))), live)  # late answers, no wait
        if self._engine is not None:
            for node_id in live_nodes:
                if node_id in self._engine and node_id not in self.client_of:
                    self._bind(node_id, self._engine[node_id])
            ask = [n for n in live_nodes if n not in self.asked
                   and (clients is None or self.client_of.get(n) in clients)]
        else:  # a refused node is not asked again: its key will not change while its node id lives
            ask = [n for n in live_nodes if n not in self.client_of and n not in self.asked]
        if ask:
            self._identify(grid, ask, live)

    def _identify(self, grid: Grid, node_ids: list[int], live: set[int]) -> None:
        messages = []
        for nid in node_ids:
            nonce = node_identity.new_nonce()
            self._nonces[nid] = nonce
            messages.append(protocol.build_identify_message(nid, nonce))
        self.asked.update(node_ids)
        for message_id, nid in zip(grid.push_messages(messages), node_ids):
            self._pending[message_id] = nid
        first_wait, longest_wait = dispatch.poll_seconds(grid)
        started = time.monotonic()
        wait, deadline = first_wait, started + self.timeout
        waiting = set(self._pending)
        while waiting & set(self._pending):
            now = time.monotonic()
            limit = deadline if self.client_of else started + self.first_timeout
            if now >= limit:
                break
            none_bound = not self.client_of
            got = list(grid.pull_messages(list(waiting & set(self._pending))))
            self._collect(grid, got, live)
            if none_bound and self.client_of and now > deadline:  # the first answer came late: the others,
                deadline = now + self.timeout                      # as cold as it was, get the usual wait
            if not got:
                time.sleep(min(wait, max(0.0, limit - time.monotonic())))
                wait = min(wait * dispatch.BACKOFF, longest_wait)
        silent = [n for n in node_ids if n not in self.answered]
        if silent:
            log.warning("%d node(s) did not answer the identify query within %.0f s (server.identify_timeout): "
                        "%s; they get nothing until they answer, and no round waits for them", len(silent),
                        self.timeout, ", ".join(str(n) for n in sorted(silent)[:10]))

    def _collect(self, grid: Grid, replies: list, live: set[int]) -> None:
        for reply in replies:
            asked = self._pending.pop(reply.metadata.reply_to_message_id, None)
            src = reply.metadata.src_node_id
            if asked is not None and src != asked and reply.has_error():
                # Flower's SuperLink answered for the node (it went offline before answering): no answer and
                # no intruder. Its query is gone, so the node is asked again if it comes back.
                log.info("node %s could not be asked who it is: %s", asked, clip(reply.error.reason))
                self._nonces.pop(asked, None)
                self.asked.discard(asked)
                continue
            if src not in self._nonces:
                self._alarm("unexpected_sender", "identify answer from node %s, which was not asked", src)
                continue
            nonce = self._nonces.pop(src)
            self.answered.add(src)
            try:
                answer = protocol.parse_identify_reply(reply, self.num_clients)
                self._judge(src, answer, nonce, live)
            except protocol.InvalidReply as exc:
                log.warning("node %s did not say which client it is: %s", src, clip(exc))
            except Exception as exc:  # one node's answer never ends the run
                log.warning("node %s: identify answer could not be handled (%s: %s)", src, type(exc).__name__,
                            clip(exc))

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

"""Send a round's messages and collect the replies: a bounded window in flight, replies seen promptly.

Why not ``grid.send_and_receive``: Flower 1.39's grids wait between pulls -- 0.1 s in simulation, 3 s
against a SuperLink -- so every round ended up to that long after its last reply. This loop pulls
every ``poll`` seconds instead (:func:`poll_seconds`): every 5 ms in memory, where a pull is cheap; over
gRPC from 50 ms, backing off by half again after each empty pull up to 1 s, so a SuperLink is not asked
twenty times a second through a long round.

Why a window: in the simulation engine a thread hands messages to the client actors by asking the
in-memory link state, every 0.1 s and once per node, for that node's next message -- and each ask
walks every stored message. With all N messages of a round pushed at once that is O(N^2) work per
pass; at 1,000 clients it kept one of our two cores busy all round, away from the clients. Keeping
at most ``max_in_flight`` messages stored makes each pass O(N * max_in_flight), and server/handout.py
(one walk over the stored messages per pass) makes it O(max_in_flight). Results do not
change: every client still gets its own message once, and replies are matched by message id.
Deployments run their nodes on other machines in parallel, so there the default (``-1``, resolved by
``server.simulate`` for simulations only) pushes everything at once.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

IN_MEMORY_POLL_SECONDS = (0.005, 0.005)  # (first, longest) wait; a pull walks only the messages in flight
REMOTE_POLL_SECONDS = (0.05, 1.0)         # a pull is one RPC to the SuperLink
BACKOFF = 1.5


def poll_seconds(grid: Grid) -> tuple[float, float]:
    """(first, longest) wait between pulls that brought nothing."""
    from flwr.superlink.grid.inmemory_grid import InMemoryGrid

    return IN_MEMORY_POLL_SECONDS if isinstance(grid, InMemoryGrid) else REMOTE_POLL_SECONDS


def send_and_receive(grid: Grid, messages: Iterable[Message], *, timeout: float,
                     max_in_flight: int = 0, poll: tuple[float, float] | None = None) -> list[Message]:
    """Like ``grid.send_and_receive`` but with at most ``max_in_flight`` messages unanswered.

    max_in_flight: 0 or less pushes everything at once. ``timeout`` bounds the whole exchange, as
    there; messages not yet pushed when it runs out get no reply (the caller counts them as missing).
    """
    messages = list(messages)
    window = len(messages) if max_in_flight <= 0 else max_in_flight
    first_wait, longest_wait = poll_seconds(grid) if poll is None else poll
    wait = first_wait
    pending = deque(messages)
    in_flight: set[str] = set()
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    while (pending or in_flight) and time.monotonic() < deadline:
        room = window - len(in_flight)
        if room > 0 and pending:
            batch = [pending.popleft() for _ in range(min(room, len(pending)))]
            in_flight.update(grid.push_messages(batch))
        got = list(grid.pull_messages(in_flight)) if in_flight else []
        replies.extend(got)
        in_flight.difference_update(m.metadata.reply_to_message_id for m in got)
        if got:
            wait = first_wait
        else:
            time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(wait * BACKOFF, longest_wait)
    return replies

"""Send a round's messages with a bounded number in flight.

Why: in Flower 1.39's simulation engine a thread hands messages to the client actors by asking the
in-memory link state, every 0.1 s and once per node, for that node's next message -- and each ask
walks every stored message. With all N messages of a round pushed at once that is O(N^2) work per
pass; at 1,000 clients it kept one of our two cores busy all round, away from the clients. Keeping
at most ``max_in_flight`` messages stored makes each pass O(N * max_in_flight). Results do not
change: every client still gets its own message once, and replies are matched by message id.

Deployments run their nodes on other machines in parallel, so there the default (``-1``, resolved by
``server.simulate`` for simulations only) pushes everything at once, exactly like ``grid.send_and_receive``.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from flwr.app import Message
from flwr.serverapp import Grid

POLL_SECONDS = 0.02


def send_and_receive(grid: Grid, messages: Iterable[Message], *, timeout: float,
                     max_in_flight: int = 0, poll: float = POLL_SECONDS) -> list[Message]:
    """Like ``grid.send_and_receive`` but with at most ``max_in_flight`` messages unanswered.

    max_in_flight: 0 or less (or at least the number of messages) pushes everything at once through
    ``grid.send_and_receive``. ``timeout`` bounds the whole exchange, as there; messages not yet
    pushed when it runs out get no reply (the caller counts them as missing).
    """
    messages = list(messages)
    if max_in_flight <= 0 or len(messages) <= max_in_flight:
        return list(grid.send_and_receive(messages, timeout=timeout))
    pending = deque(messages)
    in_flight: set[str] = set()
    replies: list[Message] = []
    deadline = time.monotonic() + timeout
    while (pending or in_flight) and time.monotonic() < deadline:
        room = max_in_flight - len(in_flight)
        if room > 0 and pending:
            batch = [pending.popleft() for _ in range(min(room, len(pending)))]
            in_flight.update(grid.push_messages(batch))
        got = list(grid.pull_messages(in_flight)) if in_flight else []
        replies.extend(got)
        in_flight.difference_update(m.metadata.reply_to_message_id for m in got)
        if not got:
            time.sleep(poll)
    return replies

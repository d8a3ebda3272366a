"""Screen a round's replies: every check a reply must pass before anything uses it.

Both strategies (knowledge fusion and the FedAvg reference) call :func:`screen`.
Whatever goes wrong with one reply -- a protocol violation, an identity that is
not the sender's, or an unexpected exception while decoding it -- becomes a
rejection with a reason; the round goes on with the others. Fusion only ever
sees what comes out of here.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from flwr.app import Message

from fedkd import protocol
from server.identity import IdentityBook

log = logging.getLogger("fedkd.server")


@dataclass
class Accepted:
    client_id: int
    node_id: int
    reply: protocol.KnowledgeReply
    message: Message


@dataclass
class Screened:
    accepted: list[Accepted] = field(default_factory=list)  # sorted by client id
    rejected: Counter = field(default_factory=Counter)       # reason -> count
    dropped_metrics: Counter = field(default_factory=Counter)  # unknown metric key -> count


def screen(replies: list[Message], rules: protocol.ReplyRules, identities: IdentityBook,
           expected_nodes: set[int], on_reject=None) -> Screened:
    """Validate every reply; ``expected_nodes`` are the nodes this round's messages went to."""
    out = Screened()
    seen: set[int] = set()
    for message in replies:
        src = None
        try:
            src = message.metadata.src_node_id
            if message.has_error():  # carries nothing; the SuperLink itself answers for an unreachable node
                raise protocol.InvalidReply("error_reply", f"code {message.error.code}: {message.error.reason}")
            if src not in expected_nodes:
                raise protocol.InvalidReply("unexpected_sender", f"node {src} was not sent a message this round")
            if src in seen:
                raise protocol.InvalidReply("duplicate_reply", f"node {src} already replied this round")
            seen.add(src)
            parsed = protocol.validate_reply(message, rules)
            identities.check_claim(src, parsed.partition_id)
        except protocol.InvalidReply as exc:
            _reject(out, exc.reason, src, rules.round, str(exc), on_reject)
            continue
        except Exception as exc:  # noqa: BLE001 -- no single reply may end the run
            _reject(out, "internal", src, rules.round, f"{type(exc).__name__}: {exc}", on_reject)
            continue
        out.dropped_metrics.update(parsed.dropped_metrics)
        out.accepted.append(Accepted(parsed.partition_id, src, parsed, message))
    out.accepted.sort(key=lambda a: a.client_id)
    return out


def _reject(out: Screened, reason: str, node_id, rnd: int, detail: str, on_reject) -> None:
    log.warning("round %d: rejected reply from node %s: %s", rnd, node_id, detail)
    out.rejected[reason] += 1
    if on_reject is not None:
        on_reject(reason)

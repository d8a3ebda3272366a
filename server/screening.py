"""Screen a round's replies: every check a reply must pass before anything uses it.

Both strategies (knowledge fusion and the FedAvg reference) call :func:`screen`.
Whatever goes wrong with one reply -- a protocol violation, an identity that is
not the sender's, or an unexpected exception while decoding it -- becomes a
rejection with a reason; the round goes on with the others. Fusion only ever
sees what comes out of here.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from flwr.app import Message

from fedkd import protocol
from fedkd.files import clip
from server.identity import IdentityBook

log = logging.getLogger("fedkd.server")

# Per array or metric entry: its key, a number, framing. Small enough that an honest reply always fits.
ENTRY_SLACK_BYTES = 256


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
    dropped_metrics: Counter = field(default_factory=Counter)  # client name -> unknown metric keys dropped
    refusals: dict[str, str] = field(default_factory=dict)   # client name -> "reason: detail" (clipped)


def node_name(identities: IdentityBook, node_id) -> str:
    """How the console and the records name a node: by its client id once it has one (node i of a
    deployment serves client i), else as an unidentified Flower node."""
    client = identities.client_of.get(node_id)
    return f"client {client}" if client is not None else f"unidentified node {node_id}"


def reply_limit(rules: protocol.ReplyRules) -> int:
    """Largest reply (bytes of data, from metadata) that could be valid under ``rules``."""
    if rules.shape is not None:
        data = rules.wire_format.payload_bytes(*rules.shape)
    else:
        data = sum(math.prod(shape) * np.dtype(dtype).itemsize for shape, dtype in (rules.weights_spec or {}).values())
        data += ENTRY_SLACK_BYTES * len(rules.weights_spec or {})
    return data + protocol.SIZE_SLACK_BYTES


def declared_bytes(message: Message) -> int:
    """A reply's size from its records' metadata: array byte lengths, key lengths and entry counts.
    Nothing is copied, serialised or decoded (``protocol.message_bytes`` serialises the whole reply)."""
    content = message.content
    total = 0
    for record in content.array_records.values():
        for key in record.keys():
            total += len(key) + len(record[key].data) + 64
    for record in list(content.metric_records.values()) + list(content.config_records.values()):
        for key in record.keys():
            value = record[key]
            total += len(key) + 16 + (len(value) * 8 if isinstance(value, (list, str, bytes)) else 8)
    return total


def check_size(message: Message, limit: int) -> None:
    """Refuse a reply larger than ``limit`` before anything in it is copied or decoded (every strategy)."""
    size = declared_bytes(message)
    if size > limit:
        raise protocol.InvalidReply("oversized", f"about {size} bytes > limit {limit}")


def screen(replies: list[Message], rules: protocol.ReplyRules, identities: IdentityBook,
           expected_nodes: set[int], on_reject=None) -> Screened:
    """Validate every reply; ``expected_nodes`` are the nodes this round's messages went to."""
    out = Screened()
    seen: set[int] = set()
    answered: set = set()
    limit = reply_limit(rules)
    for message in replies:
        src = None
        try:
            src = message.metadata.src_node_id
            answered.add(src)
            if message.has_error():  # carries nothing; the SuperLink itself answers for an unreachable node
                raise protocol.InvalidReply("error_reply", f"code {message.error.code}: {message.error.reason}")
            if src not in expected_nodes:
                raise protocol.InvalidReply("unexpected_sender", f"node {src} was not sent a message this round")
            if src in seen:
                raise protocol.InvalidReply("duplicate_reply", f"node {src} already replied this round")
            seen.add(src)
            check_size(message, limit)
            parsed = protocol.validate_reply(message, rules)
            identities.check_claim(src, parsed.partition_id)
        except protocol.InvalidReply as exc:
            _reject(out, exc.reason, node_name(identities, src), rules.round, str(exc), on_reject)
            continue
        except Exception as exc:  # noqa: BLE001 -- no single reply may end the run
            _reject(out, "internal", node_name(identities, src), rules.round, f"{type(exc).__name__}: {exc}",
                    on_reject)
            continue
        if parsed.dropped_metrics:  # counted per client, never written as keys (a client chooses the names)
            out.dropped_metrics[node_name(identities, src)] += len(parsed.dropped_metrics)
        out.accepted.append(Accepted(parsed.partition_id, src, parsed, message))
    for node in sorted(expected_nodes - answered):
        out.refusals[node_name(identities, node)] = "no_reply: no reply within server.reply_timeout"
    out.accepted.sort(key=lambda a: a.client_id)
    return out


def _reject(out: Screened, reason: str, name: str, rnd: int, detail: str, on_reject) -> None:
    detail = clip(detail)  # a client's text: escaped (no forged log lines) and bounded
    log.warning("round %d: rejected reply from %s: %s", rnd, name, detail)
    out.rejected[reason] += 1
    out.refusals.setdefault(name, detail)
    if on_reject is not None:
        on_reject(reason)

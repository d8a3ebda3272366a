"""The identify handshake: which client a node is, asked before anything personal is sent.

Node ids change when processes restart, so the server asks a node it does not know which
client it is. The query carries a fresh nonce; a node with an identity key answers with its
signature over (nonce, its node id), see ``fedkd.node_identity``.
"""
from __future__ import annotations

from dataclasses import dataclass

from flwr.app import ConfigRecord, Message, RecordDict

from fedkd.numbers import is_int
from fedkd.protocol.validation import InvalidReply


IDENTIFY_TYPE = "query"


IDENTIFY_TYPE = "query"


def build_identify_message(node_id: int, nonce: bytes) -> Message:
    return Message(content=RecordDict({"config": ConfigRecord({"ask": "partition_id", "nonce": nonce.hex()})}),
                   dst_node_id=node_id, message_type=IDENTIFY_TYPE)


def parse_identify_message(content: RecordDict) -> bytes:
    """The nonce of an identify query (empty for a query without one)."""
    if "config" not in content.config_records:
        raise ValueError("identify query has no 'config' record")
    return bytes.fromhex(str(content["config"]["nonce"])) if "nonce" in content["config"] else b""


def build_identify_reply(partition_id: int, signature: bytes | None = None) -> RecordDict:
    meta = {"partition_id": int(partition_id)}
    if signature is not None:
        meta["signature"] = signature.hex()
    return RecordDict({"meta": ConfigRecord(meta)})


@dataclass(frozen=True)
class IdentifyAnswer:
    partition_id: int
    signature: bytes | None


def parse_identify_reply(message: Message, num_partitions: int) -> IdentifyAnswer:
    """The client id a node claims (and its signature, if any), or :class:`InvalidReply`."""
    if message.has_error():
        raise InvalidReply("error_reply", f"code {message.error.code}: {message.error.reason}")
    if "meta" not in message.content.config_records or "partition_id" not in message.content["meta"]:
        raise InvalidReply("missing_key", "meta.partition_id is missing")
    meta = message.content["meta"]
    pid = meta["partition_id"]
    if not is_int(pid) or not 0 <= pid < num_partitions:
        raise InvalidReply("bad_partition", f"partition_id {pid!r} not in [0, {num_partitions})")
    signature = None
    if "signature" in meta:
        try:
            signature = bytes.fromhex(str(meta["signature"]))
        except ValueError:
            raise InvalidReply("identity_mismatch", "the identity signature is not hex") from None
    return IdentifyAnswer(pid, signature)

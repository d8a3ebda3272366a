"""Identity bound to the node: signatures over a fresh nonce, the operator's registry, trust on first use."""
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fedkd import node_identity, protocol
from server.identity import IdentityBook


def make_key(path):
    key = ec.generate_private_key(ec.SECP384R1())
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                       serialization.NoEncryption()))
    pub = path.with_suffix(".pub")
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH) + b" test\n")
    return path, pub


@pytest.fixture
def keys(tmp_path):
    return [make_key(tmp_path / f"node-{i}") for i in range(3)]


@pytest.fixture
def registry(tmp_path, keys):
    path = node_identity.write_registry(tmp_path / "identities.json", {i: pub for i, (_, pub) in enumerate(keys)})
    return node_identity.load_registry(path)


def answer(client, key_path, nonce, node_id):
    return protocol.IdentifyAnswer(client, node_identity.sign(key_path, nonce, node_id) if key_path else None)


def test_a_signature_binds_to_the_nonce_and_the_node(keys, registry):
    nonce = node_identity.new_nonce()
    sig = node_identity.sign(keys[0][0], nonce, 77)
    assert node_identity.verify(registry[0], nonce, 77, sig)
    assert not node_identity.verify(registry[0], nonce, 78, sig)              # relayed for another node
    assert not node_identity.verify(registry[0], node_identity.new_nonce(), 77, sig)  # replayed for another query
    assert not node_identity.verify(registry[1], nonce, 77, sig)              # another client's key


def test_the_registry_binds_ids_to_keys_and_a_restarted_node_gets_its_id_back(keys, registry):
    book = IdentityBook(3, registry)
    nonce = node_identity.new_nonce()
    book._judge(11, answer(0, keys[0][0], nonce, 11), nonce, {11})
    assert book.client_of == {11: 0}
    book._judge(12, answer(0, keys[2][0], nonce, 12), nonce, {11, 12})  # an impostor with its own key
    assert book.client_of == {11: 0} and book.alarms["identity_mismatch"] == 1
    book._judge(13, answer(0, None, nonce, 13), nonce, {11, 13})  # no signature at all
    assert book.alarms["identity_mismatch"] == 2
    book._judge(21, answer(0, keys[0][0], nonce, 21), nonce, {21})  # node 11 restarted as node 21
    assert book.client_of == {21: 0} and book.node_of[0] == 21
    with pytest.raises(protocol.InvalidReply, match="identity_mismatch"):
        book.check_claim(21, 1)
    with pytest.raises(protocol.InvalidReply, match="no bound client id"):
        book.check_claim(12, 0)
    book.check_claim(21, 0)


def test_trust_on_first_use_refuses_a_second_live_claimant():
    book = IdentityBook(3)
    book._judge(11, protocol.IdentifyAnswer(1, None), b"", {11})
    book._judge(12, protocol.IdentifyAnswer(1, None), b"", {11, 12})
    assert book.client_of == {11: 1} and book.alarms["identity_mismatch"] == 1
    book._judge(12, protocol.IdentifyAnswer(1, None), b"", {12})  # node 11 is gone: the id moves
    assert book.client_of == {12: 1}


def test_a_broken_registry_is_refused_naming_the_file(tmp_path, keys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"clients": {"0": "not a key"}}')
    with pytest.raises(node_identity.IdentityError, match="bad.json"):
        node_identity.load_registry(bad)
    with pytest.raises(node_identity.IdentityError, match="not found"):
        node_identity.load_registry(tmp_path / "missing.json")
    same = node_identity.write_registry(tmp_path / "same.json", {0: keys[0][1], 1: keys[0][1]})
    with pytest.raises(node_identity.IdentityError, match="one key for two client ids"):
        node_identity.load_registry(same)


class ColdNodes:
    """What IdentityBook reads of Flower's Grid, for nodes whose answers come ``answer_after`` s after the query
    (a cold ClientApp); a node not in ``answer_after`` never answers."""

    def __init__(self, answer_after: dict[int, float]):
        import time

        self.answer_after, self.clock = answer_after, time.monotonic
        self.sent: dict[str, tuple[int, float]] = {}

    def push_messages(self, messages):
        ids = [f"query-{m.metadata.dst_node_id}" for m in messages]
        for message_id, m in zip(ids, messages):
            self.sent[message_id] = (m.metadata.dst_node_id, self.clock())
        return ids

    def pull_messages(self, message_ids):
        from types import SimpleNamespace

        due = [(mid, self.sent[mid][0]) for mid in message_ids
               if self.sent[mid][0] in self.answer_after
               and self.clock() - self.sent[mid][1] >= self.answer_after[self.sent[mid][0]]]
        return [SimpleNamespace(metadata=SimpleNamespace(reply_to_message_id=mid, src_node_id=node))
                for mid, node in due]


def test_while_no_node_is_bound_the_first_answers_are_waited_for_past_identify_timeout(monkeypatch):
    """Every node answers after identify_timeout (cold ClientApps): the first wait lasts up to first_timeout
    and then identify_timeout more, so the run's first round has its nodes instead of nothing."""
    monkeypatch.setattr(protocol, "parse_identify_reply",
                        lambda reply, n: protocol.IdentifyAnswer(reply.metadata.src_node_id - 11, None))
    book = IdentityBook(2, timeout=0.3, first_timeout=30.0)
    book._identify(ColdNodes({11: 0.8, 12: 0.9}), [11, 12], {11, 12})
    assert book.client_of == {11: 0, 12: 1} and not book._pending


def test_once_a_node_is_bound_a_silent_one_costs_only_identify_timeout(monkeypatch):
    monkeypatch.setattr(protocol, "parse_identify_reply",
                        lambda reply, n: protocol.IdentifyAnswer(reply.metadata.src_node_id - 11, None))
    book = IdentityBook(2, timeout=0.3, first_timeout=30.0)
    book._identify(ColdNodes({11: 0.0}), [11, 12], {11, 12})  # node 12 never answers
    assert book.client_of == {11: 0} and list(book._pending.values()) == [12]  # its answer stays welcome


def test_the_superlinks_error_reply_for_an_offline_node_is_no_answer_and_no_alarm(caplog):
    """Flower's SuperLink answers a query to a node that went offline with an error from node 1: that node
    did not answer (it is named as silent, and asked again if it comes back); nobody is an intruder."""
    import logging

    from flwr.app import Error, Message

    class OfflineNode:
        def push_messages(self, messages):
            self.query = messages[0]
            return ["query-12"]

        def pull_messages(self, message_ids):
            reply = Message(Error(code=0, reason="node unavailable"), reply_to=self.query)
            reply.metadata.__dict__["_src_node_id"] = 1  # the SuperLink's own node id
            reply.metadata.__dict__["_reply_to_message_id"] = "query-12"
            return [reply]

    book = IdentityBook(2, timeout=5.0, first_timeout=5.0)
    with caplog.at_level(logging.WARNING, logger="fedkd.server"):
        book._identify(OfflineNode(), [12], {12})
    assert not book.alarms and not book.client_of and not book._pending
    assert 12 not in book.asked  # asked again once it is live again
    assert "did not answer the identify query" in caplog.text

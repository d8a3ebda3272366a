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

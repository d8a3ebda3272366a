"""A federation's clients are built on first use and get exactly the data the eager build gave.

tests/fixtures/federation_digests.json holds digests of every array of three federations as the
eager build (before clients became lazy) produced them.
"""
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from fedkd.data import build_federation
from fedkd.data.federation import FederationSpec

DIGESTS = json.loads((Path(__file__).parent / "fixtures" / "federation_digests.json").read_text())


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode())
        h.update(repr(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _client_digest(c) -> str:
    return _digest(c.train_x, c.train_y, c.test_x, c.test_y, c.label_histogram, c.train_indices)


@pytest.mark.parametrize("name", sorted(DIGESTS))
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_lazy_clients_get_the_eager_builds_data_in_any_order(name, order):
    want = DIGESTS[name]
    build_federation.cache_clear()
    fed = build_federation(FederationSpec(**want["spec"]))
    ids = list(range(fed.num_clients))
    if order == "reverse":  # a client's data must not depend on which clients were built before it
        ids.reverse()
    got = {i: _client_digest(fed.clients[i]) for i in ids}
    assert [got[i] for i in range(fed.num_clients)] == want["clients"]
    assert _digest(fed.transfer_x, fed.transfer_indices, fed._transfer_labels_for_audit) == want["transfer"]
    assert _digest(fed.global_test_x, fed.global_test_y) == want["global_test"]
    assert _digest(fed.label_histograms) == want["histograms"]


def test_clients_behave_as_a_read_only_sequence():
    build_federation.cache_clear()
    fed = build_federation(FederationSpec(**DIGESTS["dirichlet"]["spec"]))
    n = len(fed.clients)
    assert fed.clients[-1].client_id == n - 1
    assert [c.client_id for c in fed.clients[1:3]] == [1, 2]
    assert [c.client_id for c in fed.clients] == list(range(n))
    assert fed.clients[2] is fed.clients[2]  # kept, not rebuilt
    with pytest.raises(IndexError):
        fed.clients[n]
    with pytest.raises(TypeError):
        fed.clients[0] = fed.clients[1]
    assert not fed.clients[0].train_x.flags.writeable
    np.testing.assert_array_equal(fed.label_histograms, np.stack([c.label_histogram for c in fed.clients]))

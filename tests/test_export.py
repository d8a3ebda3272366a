"""A simulated federation exported to folders reads back bit-identical; lossy pixels are refused."""
import dataclasses
import json

import numpy as np
import pytest

from fedkd.data import (
    ClientData,
    ExportError,
    Federation,
    FederationSpec,
    FolderSource,
    SimulatedSource,
    build_federation,
    export_federation,
    fingerprint,
    label_histogram,
    load_split,
    load_transfer_set,
    to_uint8_exact,
)


@pytest.fixture(scope="module")
def digits():
    return build_federation(
        FederationSpec(num_clients=3, transfer_size=40, local_test_size=12, global_test_size=30, seed=4)
    )


@pytest.fixture(scope="module")
def exact_digits(digits):
    """The digits loader stores k/255 pixels (what an image file holds), so its federation exports exactly."""
    return digits


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def test_round_trip_is_bit_identical(exact_digits, tmp_path):
    fed = exact_digits
    manifest = export_federation(fed, tmp_path / "out")
    out = tmp_path / "out"
    expected = ["global_test", "manifest.json", "node-0", "node-1", "node-2", "transfer"]
    assert sorted(p.name for p in out.iterdir()) == expected

    transfer = load_transfer_set(out / "transfer")
    assert _same(transfer.x, fed.transfer_x)
    assert fingerprint(transfer.x) == fingerprint(fed.transfer_x) and transfer.fingerprint == manifest.transfer_fingerprint
    assert transfer.classes == fed.class_names and transfer.input_shape == fed.input_shape
    assert (out / "transfer" / "000000.png").is_file()

    for cid in range(fed.num_clients):
        sim = SimulatedSource(fed, cid).load()
        real = FolderSource.for_transfer(out / f"node-{cid}", transfer).load()
        for field in ("train_x", "train_y", "test_x", "test_y"):
            assert _same(getattr(real, field), getattr(sim, field)), (cid, field)
    gx, gy = load_split(out / "global_test", classes=transfer.classes, input_shape=transfer.input_shape)
    assert _same(gx, fed.global_test_x) and _same(gy, fed.global_test_y)

    saved = json.loads((out / "manifest.json").read_text())
    assert saved == manifest.to_json()
    assert saved["transfer"] == {"dir": "transfer", "size": 40, "fingerprint": transfer.fingerprint}
    assert [n["train"] for n in saved["nodes"]] == [c.num_samples for c in fed.clients]
    assert saved["global_test"]["size"] == 30 and saved["spec"]["seed"] == 4
    assert "label_histogram" not in json.dumps(saved)


def test_class_without_samples_gets_no_folder(exact_digits, tmp_path):
    export_federation(exact_digits, tmp_path / "out", global_test=False)
    for c in exact_digits.clients:
        folders = {p.name for p in (tmp_path / "out" / f"node-{c.client_id}" / "train").iterdir()}
        assert folders == {str(k) for k in np.flatnonzero(c.label_histogram)}
    assert not (tmp_path / "out" / "global_test").exists()


def test_lossy_pixels_are_refused_before_writing(digits, tmp_path):
    lossy = dataclasses.replace(digits, transfer_x=(digits.transfer_x * np.float32(16 / 17)).astype(np.float32))
    with pytest.raises(ExportError, match=r"transfer_x: .* not exactly k/255 .* value 0\.\d+"):
        export_federation(lossy, tmp_path / "out")
    assert not any(tmp_path.iterdir())  # nothing written, no staging folder left behind


def test_to_uint8_exact():
    u = np.arange(256, dtype=np.uint8).reshape(4, 1, 8, 8)
    assert _same(to_uint8_exact(u.astype(np.float32) / np.float32(255), "x"), u)
    x = u.astype(np.float32) / np.float32(255)
    x[2, 0, 3, 3] = np.nextafter(x[2, 0, 3, 3], np.float32(1))
    with pytest.raises(ExportError, match=r"x: 1 pixel.*sample 2, index \(0, 3, 3\)"):
        to_uint8_exact(x, "x")
    with pytest.raises(ExportError, match="float32"):
        to_uint8_exact(x.astype(np.float64), "x")
    with pytest.raises(ExportError, match=r"in \[0, 1\]"):
        to_uint8_exact(np.full((1, 1, 1, 1), 1.5, np.float32), "x")


def test_refuses_non_empty_out_dir_but_fills_an_empty_one(exact_digits, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(ExportError, match="refusing to overwrite"):
        export_federation(exact_digits, tmp_path / "full")
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["keep.txt"]
    (tmp_path / "empty").mkdir()
    export_federation(exact_digits, tmp_path / "empty", global_test=False)
    assert (tmp_path / "empty" / "manifest.json").is_file()


def _rgb_federation(class_names) -> Federation:
    """A tiny hand-made RGB federation with exact k/255 pixels and a class name holding '/'."""
    rng = np.random.default_rng(0)

    def images(n):
        return rng.integers(0, 256, size=(n, 3, 4, 4), dtype=np.uint8).astype(np.float32) / np.float32(255)

    def labels(n):
        return rng.integers(0, 3, size=n).astype(np.int64)

    clients = []
    for cid, n in enumerate((7, 5)):
        y = labels(n)
        clients.append(ClientData(cid, images(n), y, images(3), labels(3), label_histogram(y, 3), np.arange(n)))
    transfer = images(6)
    return Federation(
        spec=FederationSpec(), num_classes=3, input_shape=(3, 4, 4), class_names=tuple(class_names),
        transfer_x=transfer, transfer_fingerprint=fingerprint(transfer), transfer_indices=np.arange(6),
        global_test_x=images(4), global_test_y=labels(4), clients=tuple(clients),
        _transfer_labels_for_audit=labels(6),
    )


def test_rgb_and_unsafe_class_names(tmp_path):
    fed = _rgb_federation(("T-shirt/top", "Trouser", "Ankle boot"))
    manifest = export_federation(fed, tmp_path / "out")
    assert manifest.classes == ("T-shirt_top", "Trouser", "Ankle boot")
    assert (tmp_path / "out" / "transfer" / "classes.txt").read_text() == "T-shirt_top\nTrouser\nAnkle boot\n"
    transfer = load_transfer_set(tmp_path / "out" / "transfer")
    assert fingerprint(transfer.x) == fed.transfer_fingerprint
    for c in fed.clients:
        got = FolderSource.for_transfer(tmp_path / "out" / f"node-{c.client_id}", transfer).load()
        assert _same(got.train_x, c.train_x) and _same(got.train_y, c.train_y)
        assert _same(got.test_x, c.test_x) and _same(got.test_y, c.test_y)


def test_clashing_or_miscounted_class_names(tmp_path):
    with pytest.raises(ExportError, match="clashing folder names"):
        export_federation(_rgb_federation(("a/b", "a_b", "c")), tmp_path / "x")
    with pytest.raises(ExportError, match="2 class names given for 3 classes"):
        export_federation(_rgb_federation(("a", "b", "c")), tmp_path / "y", classes=("a", "b"))
    assert not any(tmp_path.iterdir())

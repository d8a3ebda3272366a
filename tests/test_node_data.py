"""A node's own data and the transfer set read from tiny generated folders; every bad-data case names its path."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedkd.data import (
    FolderSource,
    NodeData,
    NodeDataError,
    NodeDataSource,
    SimulatedSource,
    TransferSetError,
    fingerprint,
    load_node_data,
    load_split,
    load_transfer_set,
    safe_class_name,
)
from fedkd.data.transfer import transfer_fingerprint

CLASSES = ("zero", "one", "two")
GREY = (1, 4, 5)
RGB = (3, 4, 5)


def _img(seed: int, shape=GREY) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)


def _png(path: Path, img: np.ndarray) -> None:
    """Write a uint8 (C, H, W) image with PIL (the format follows the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img[0] if img.shape[0] == 1 else np.ascontiguousarray(img.transpose(1, 2, 0))).save(path)


def _classes_txt(folder: Path, classes=CLASSES) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text("".join(f"{c}\n" for c in classes))


def _image_node(root: Path, layout: dict[str, dict[str, list[int]]], shape=GREY) -> dict[int, np.ndarray]:
    """layout: split -> class -> seeds; file names are the seeds, images are _img(seed)."""
    images = {}
    for split, per_class in layout.items():
        (root / split).mkdir(parents=True, exist_ok=True)
        for cls, seeds in per_class.items():
            for s in seeds:
                images[s] = _img(s, shape)
                _png(root / split / cls / f"{s}.png", images[s])
    return images


def _load(root, shape=GREY):
    return load_node_data(root, classes=CLASSES, input_shape=shape)


# --------------------------------------------------------------------------- loading


def test_image_folder_labels_follow_classes_txt_not_alphabetical(tmp_path):
    # Alphabetically "one" < "two" < "zero"; classes.txt says zero=0, one=1, two=2.
    _image_node(tmp_path, {"train": {"zero": [10, 11], "two": [20]}, "test": {"one": [30]}})
    data = _load(tmp_path)
    assert isinstance(data, NodeData) and data.path == tmp_path
    assert data.train_x.dtype == np.float32 and data.train_x.shape == (3, *GREY)
    assert data.train_y.dtype == np.int64
    # Names are not 0..N-1, so the order is by label, then by path.
    assert data.train_y.tolist() == [0, 0, 2]
    np.testing.assert_array_equal(data.train_x[2], _img(20).astype(np.float32) / np.float32(255))
    assert data.test_y.tolist() == [1]
    assert data.label_histogram(3).tolist() == [2, 0, 1]
    assert not data.train_x.flags.writeable


def test_numbered_files_restore_sample_order(tmp_path):
    # Files 0..4 spread over classes: the loader puts them back in number order.
    layout = {"train": {"two": [0, 3], "zero": [1, 4], "one": [2]}, "test": {"one": [0]}}
    images = _image_node(tmp_path, layout)
    data = _load(tmp_path)
    assert data.train_y.tolist() == [2, 0, 1, 2, 0]
    expected = np.stack([images[j] for j in range(5)]).astype(np.float32) / np.float32(255)
    assert data.train_x.tobytes() == expected.tobytes()
    assert data.test_x.shape == (1, *GREY) and data.test_y.tolist() == [1]


def test_jpeg_and_channel_conversions(tmp_path):
    _png(tmp_path / "test/one/t.png", _img(1))
    grey = _img(1)
    _png(tmp_path / "train/two/a.jpg", np.full((3, 4, 5), 77, np.uint8))
    _png(tmp_path / "train/one/b.png", np.repeat(grey, 3, axis=0))  # RGB with R == G == B: grey is unambiguous
    _png(tmp_path / "train/zero/c.png", np.concatenate([grey, np.full_like(grey, 255)]))  # grey + opaque alpha
    data = _load(tmp_path)
    assert data.train_x.shape == (3, *GREY) and data.train_y.tolist() == [0, 1, 2]
    np.testing.assert_array_equal(data.train_x[0], grey.astype(np.float32) / 255)
    np.testing.assert_array_equal(data.train_x[1], grey.astype(np.float32) / 255)
    np.testing.assert_allclose(data.train_x[2], 77 / 255, atol=3 / 255)  # JPEG is lossy
    rgb = load_node_data(tmp_path, classes=CLASSES, input_shape=RGB)  # grey -> RGB by repetition
    assert rgb.train_x.shape == (3, *RGB)
    np.testing.assert_array_equal(rgb.train_x[0], np.repeat(grey, 3, 0).astype(np.float32) / 255)


def test_npz_layouts_and_dtypes(tmp_path):
    x = np.stack([_img(i) for i in range(4)])  # (4, 1, 4, 5)
    y = np.array([2, 0, 1, 2])
    np.savez(tmp_path / "train.npz", x=x[:, 0], y=y)  # (N, H, W) uint8
    np.savez(tmp_path / "test.npz", x=x.astype(np.float64) / 255, y=y.astype(np.int32))
    data = _load(tmp_path)
    assert data.train_x.tobytes() == (x.astype(np.float32) / np.float32(255)).tobytes()
    assert data.train_y.dtype == np.int64 and data.train_y.tolist() == y.tolist()
    assert data.test_x.dtype == np.float32 and data.test_y.dtype == np.int64
    np.testing.assert_allclose(data.test_x, x / 255, atol=1e-7)

    rgb = np.stack([_img(i, RGB) for i in range(4)])
    xs, _ = load_split(_npz(tmp_path / "hwc.npz", x=rgb.transpose(0, 2, 3, 1), y=y), classes=CLASSES, input_shape=RGB)
    assert xs.tobytes() == (rgb.astype(np.float32) / np.float32(255)).tobytes()


def _npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def test_mixed_forms_per_split(tmp_path):
    _image_node(tmp_path, {"train": {"one": [5]}})
    np.savez(tmp_path / "test.npz", x=_img(7), y=np.ones(1, np.int64))
    assert _load(tmp_path).num_samples == 1


def test_sources_share_one_interface(tmp_path):
    from fedkd.data import FederationSpec, build_federation

    fed = build_federation(FederationSpec(num_clients=2, transfer_size=50, local_test_size=5, seed=1))
    sim = SimulatedSource(fed, 1)
    assert isinstance(sim, NodeDataSource)
    got = sim.load()
    assert got.train_x is fed.clients[1].train_x and got.path is None
    with pytest.raises(ValueError, match="client_id"):
        SimulatedSource(fed, 2).load()

    _image_node(tmp_path, {"train": {"one": [3]}, "test": {"two": [900]}})
    _classes_txt(tmp_path / "transfer")
    _png(tmp_path / "transfer/a.png", _img(9))
    folder = FolderSource.for_transfer(tmp_path, load_transfer_set(tmp_path / "transfer"))
    assert isinstance(folder, NodeDataSource)
    assert folder.load().train_y.tolist() == [1]


# --------------------------------------------------------------------------- bad node data


def _raises(match: str, root, shape=GREY):
    with pytest.raises(NodeDataError, match=match) as info:
        _load(root, shape)
    return str(info.value)


def test_missing_folder_and_splits(tmp_path):
    assert str(tmp_path / "nope") in _raises("does not exist", tmp_path / "nope")
    _image_node(tmp_path, {"train": {"one": [1]}})
    assert str(tmp_path) in _raises("missing test/", tmp_path)
    (tmp_path / "test").mkdir()
    np.savez(tmp_path / "test.npz", x=_img(7), y=np.ones(1, np.int64))
    _raises("both test/ and test.npz", tmp_path)


def test_unknown_class_folder(tmp_path):
    _image_node(tmp_path, {"train": {"one": [1], "three": [2]}, "test": {"two": [900]}})
    msg = _raises("unknown class folder", tmp_path)
    assert "three" in msg and str(tmp_path / "train") in msg


def test_empty_class_folder_is_an_error_but_a_missing_one_is_fine(tmp_path):
    _image_node(tmp_path, {"train": {"one": [1]}, "test": {"two": [900]}})
    assert _load(tmp_path).train_y.tolist() == [1]  # "zero" and "two" absent: fine
    (tmp_path / "train" / "two").mkdir()
    assert "two" in _raises("empty class folder", tmp_path)


def test_corrupt_and_unsupported_files_are_named(tmp_path):
    _image_node(tmp_path, {"train": {"one": [1]}, "test": {"two": [900]}})
    bad = tmp_path / "train" / "one" / "broken.png"
    bad.write_bytes(b"not a png at all")
    assert str(bad) in _raises("unreadable or corrupt", tmp_path)
    bad.unlink()
    gif = tmp_path / "train" / "one" / "x.gif"
    gif.write_bytes(b"GIF89a")
    assert str(gif) in _raises("not a PNG/JPEG", tmp_path)
    gif.unlink()
    (tmp_path / "train" / "one" / ".DS_Store").write_bytes(b"\0")  # hidden files are skipped
    assert _load(tmp_path).num_samples == 1
    _png(tmp_path / "train" / "stray.png", _img(3))
    _raises("outside a class folder", tmp_path)


def test_shape_mismatches(tmp_path):
    _image_node(tmp_path, {"train": {"one": [1]}, "test": {"two": [900]}})
    _png(tmp_path / "train/zero/big.png", _img(2, (1, 6, 5)))
    assert "big.png" in _raises("is 6x5 .HxW., expected 4x5 like the transfer set; resize", tmp_path)
    (tmp_path / "train/zero/big.png").unlink()
    _png(tmp_path / "train/zero/colour.png", _img(2, RGB))
    assert "colour.png" in _raises("colour", tmp_path)
    (tmp_path / "train/zero/colour.png").unlink()
    alpha = np.concatenate([_img(3), np.zeros((1, 4, 5), np.uint8)])
    _png(tmp_path / "train/zero/alpha.png", np.repeat(alpha[:1], 3, 0))  # fine: grey as RGB
    assert _load(tmp_path).num_samples == 2
    _png(tmp_path / "train/zero/alpha2.png", alpha)
    _raises("transparent", tmp_path)


def test_bad_npz(tmp_path):
    def node(**train):
        for f in tmp_path.glob("*.npz"):
            f.unlink()
        np.savez(tmp_path / "train.npz", **train)
        np.savez(tmp_path / "test.npz", x=_img(7), y=np.ones(1, np.int64))

    x = np.stack([_img(i)[0] for i in range(3)])
    node(x=x, y=np.array([0, 1, 3]))
    assert str(tmp_path / "train.npz") in _raises(r"labels must be in \[0, 3\)", tmp_path)
    node(x=x, y=np.array([0, 1]))
    _raises("3 images but y holds 2", tmp_path)
    node(x=x)
    _raises("lacks array", tmp_path)
    node(x=x, y=np.array([0.0, 1.0, 2.0]))
    _raises("integer", tmp_path)
    node(x=x * 2.0, y=np.array([0, 1, 2]))
    _raises(r"in \[0, 1\]", tmp_path)
    node(x=x.astype(np.int32), y=np.array([0, 1, 2]))
    _raises("dtype int32", tmp_path)
    node(x=x[:, :3], y=np.array([0, 1, 2]))
    _raises("do not match", tmp_path)
    node(x=x[:0], y=np.zeros(0, np.int64))
    _raises("no images; the training set", tmp_path)
    (tmp_path / "train.npz").write_bytes(b"garbage")
    assert str(tmp_path / "train.npz") in _raises("corrupt or truncated", tmp_path)


def test_empty_train_and_test_folders_are_both_named(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "test").mkdir()
    msg = _raises("2 problems", tmp_path)
    assert f"{tmp_path / 'train'}: no images; the training set" in msg
    assert f"{tmp_path / 'test'}: no images; the local test set" in msg


# --------------------------------------------------------------------------- transfer set


def test_transfer_images_in_sorted_name_order(tmp_path):
    _classes_txt(tmp_path)
    imgs = {name: _img(i) for i, name in enumerate(["b.png", "a.png", "c.png"])}
    for name, img in imgs.items():
        _png(tmp_path / name, img)
    (tmp_path / "README").write_text("other files are ignored")
    ts = load_transfer_set(tmp_path)
    expected = np.stack([imgs[n] for n in sorted(imgs)]).astype(np.float32) / np.float32(255)
    assert ts.x.tobytes() == expected.tobytes()
    assert fingerprint(ts.x) == fingerprint(expected) and ts.fingerprint == transfer_fingerprint(expected, CLASSES)
    assert ts.classes == CLASSES and ts.num_classes == 3 and ts.input_shape == GREY


def test_transfer_npz(tmp_path):
    _classes_txt(tmp_path)
    x = np.stack([_img(i) for i in range(3)])
    np.savez(tmp_path / "transfer.npz", x=x)
    ts = load_transfer_set(tmp_path)
    assert fingerprint(ts.x) == fingerprint(x.astype(np.float32) / np.float32(255))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: None, "missing classes.txt"),
        (lambda p: _classes_txt(p), "no transfer.npz and no PNG/JPEG"),
        (lambda p: (_classes_txt(p), (p / "x.png").write_bytes(b"junk")), "x.png: unreadable"),
        (lambda p: (_classes_txt(p), _png(p / "a.png", _img(1)), _png(p / "b.png", _img(2, (1, 5, 5)))),
         "b.png: image shape"),
        (lambda p: (_classes_txt(p), _png(p / "a.png", _img(1)), np.savez(p / "transfer.npz", x=np.zeros((1, 4, 5)))),
         "both"),
        (lambda p: _classes_txt(p, ("a", "b", "a")), "appears on lines 1 and 3"),
        (lambda p: _classes_txt(p, ("a", "", "b")), "line 2 is blank"),
        (lambda p: _classes_txt(p, ("T-shirt/top", "b")), "not a safe folder name"),
        (lambda p: (_classes_txt(p), np.savez(p / "transfer.npz", y=np.zeros(3))), "lacks array"),
    ],
)
def test_transfer_errors(tmp_path, make, match):
    make(tmp_path)
    with pytest.raises(TransferSetError, match=match) as info:
        load_transfer_set(tmp_path)
    assert str(tmp_path) in str(info.value)


def test_transfer_missing_folder(tmp_path):
    with pytest.raises(TransferSetError, match="does not exist"):
        load_transfer_set(tmp_path / "none")


def test_safe_class_name():
    assert safe_class_name("T-shirt/top") == "T-shirt_top"
    assert safe_class_name(" Ankle boot ") == "Ankle boot"
    for bad in ("", "..", ".hidden", "a\tb"):
        with pytest.raises(ValueError):
            safe_class_name(bad)


def test_transfer_npz_channels_last(tmp_path):
    _classes_txt(tmp_path)
    x = np.stack([_img(i, RGB) for i in range(2)])
    np.savez(tmp_path / "transfer.npz", x=x.transpose(0, 2, 3, 1))
    ts = load_transfer_set(tmp_path)
    assert ts.input_shape == RGB and ts.x.tobytes() == (x.astype(np.float32) / np.float32(255)).tobytes()
    np.savez(tmp_path / "transfer.npz", x=np.zeros((2, 4, 5, 6), np.uint8))
    with pytest.raises(TransferSetError, match="channel axis"):
        load_transfer_set(tmp_path)


def test_split_that_is_a_file(tmp_path):
    (tmp_path / "train").write_text("")
    _png(tmp_path / "test/one/t.png", _img(1))
    _raises("is a file", tmp_path)

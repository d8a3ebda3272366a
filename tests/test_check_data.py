"""A data owner's folders as nobody on the project made them: `fedkd check-data` lists every problem at once,
labels are never misread, resizing and links only by choice. Tiny generated files (PIL), no Flower."""
import json
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fedkd.cli import main as fedkd_main
from fedkd.data import NodeDataError, load_node_data, load_transfer_set
from fedkd.data.check import check_data
from fedkd.data.node_data import ReadOptions

# Accents, spaces, Cyrillic and CJK: what real class names look like.
CLASSES = ("carré plein", "кошка", "猫", "zero")
SHAPE = (1, 6, 5)  # (C, H, W) of every transfer image


def _save(path: Path, pixels: np.ndarray, **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, **params)
    return path


def _grey(seed: int, hw=SHAPE[1:]) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=hw, dtype=np.uint8)


def _transfer(folder: Path, classes=CLASSES, text_prefix: str = "") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "classes.txt").write_text(text_prefix + "".join(f"{c}\n" for c in classes), encoding="utf-8")
    for i in range(3):
        _save(folder / f"{i:03d}.png", _grey(100 + i))
    return folder


def _node(root: Path, seed: int = 0) -> Path:
    """A clean node: two classes in train, one in test, PNG and upper-case .PNG names, a greyscale JPEG."""
    _save(root / "train" / CLASSES[0] / "a.png", _grey(seed))
    _save(root / "train" / CLASSES[1] / "B.PNG", _grey(seed + 1))
    _save(root / "train" / CLASSES[1] / "c.jpg", _grey(seed + 2), quality=95)
    _save(root / "test" / CLASSES[2] / "t.png", _grey(seed + 3))
    return root


def _federation(root: Path) -> Path:
    _transfer(root / "transfer")
    for i in range(3):
        _node(root / f"node-{i}", seed=10 * i)
    return root


def test_clean_federation_passes_with_a_summary(tmp_path, capsys):
    fed = _federation(tmp_path / "fed")
    (fed / "node-0" / "train" / CLASSES[0] / ".DS_Store").write_bytes(b"\0")  # system files are skipped
    (fed / "node-0" / "train" / CLASSES[0] / "Thumbs.db").write_bytes(b"\0")
    assert fedkd_main(["check-data", str(fed)]) == 0
    out = capsys.readouterr().out
    assert "no problems in 3 node folder(s)" in out
    assert f"train: 3 images ({CLASSES[0]} 1, {CLASSES[1]} 2)" in out and "mode L (3)" in out
    assert f"classes with no training image: {CLASSES[2]}, zero" in out
    assert "2 system file(s) skipped" in out


def test_every_problem_is_listed_at_once_with_its_file(tmp_path, capsys):
    fed = _federation(tmp_path / "fed")
    readme = fed / "node-0" / "train" / CLASSES[0] / "README.txt"
    readme.write_text("notes")
    odd = _save(fed / "node-1" / "train" / CLASSES[1] / "odd size.PNG", _grey(1, (21, 21)))
    for p in (fed / "node-2" / "test").iterdir():
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    (fed / "node-1" / "train" / "dogs").mkdir()  # unknown class
    assert fedkd_main(["check-data", str(fed)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("4 problem(s):")
    assert f"{readme}: not a PNG/JPEG image" in out
    assert f"{odd}: image is 21x21 (HxW), expected 6x5 like the transfer set; resize the files to 6x5" in out
    assert "image_size=6x5" in out
    assert f"{fed / 'node-2' / 'test'}: no images; the local test set" in out
    assert f"{fed / 'node-1' / 'train' / 'dogs'}: unknown class folder 'dogs'" in out
    assert "in 3 of 3 node folder(s)" in out

    # the loader a node runs refuses the same folder with the same list, not only the first problem
    transfer = load_transfer_set(fed / "transfer")
    with pytest.raises(NodeDataError, match="2 problems") as info:
        load_node_data(fed / "node-1", classes=transfer.classes, input_shape=transfer.input_shape)
    assert "odd size.PNG" in str(info.value) and "dogs" in str(info.value)


def test_a_reordered_classes_txt_is_refused(tmp_path):
    fed = _federation(tmp_path / "fed")
    (fed / "manifest.json").write_text(json.dumps({"classes": list(CLASSES), "transfer": {
        "fingerprint": load_transfer_set(fed / "transfer").fingerprint}}))
    copy = _transfer(tmp_path / "copy", classes=CLASSES[1:] + CLASSES[:1])
    assert load_transfer_set(copy).fingerprint != load_transfer_set(fed / "transfer").fingerprint  # same pixels
    assert check_data(fed / "node-0", transfer_dir=fed / "transfer").ok
    check = check_data(fed / "node-0", transfer_dir=copy)
    assert len(check.all_problems) == 1
    assert "in another order" in check.problems[0] and f"line 1 is {CLASSES[1]!r} here, {CLASSES[0]!r}" \
        in check.problems[0]


def test_class_names_are_compared_in_nfc_without_bom_or_spaces(tmp_path):
    """A folder copied from macOS (NFD) and a classes.txt saved with a BOM name the same classes."""
    transfer = load_transfer_set(_transfer(tmp_path / "t", text_prefix="\ufeff"))
    assert transfer.classes == CLASSES
    node = tmp_path / "node"
    _save(node / "train" / unicodedata.normalize("NFD", CLASSES[0]) / "a.png", _grey(1))
    _save(node / "test" / f" {CLASSES[3]} " / "b.png", _grey(2))
    data = load_node_data(node, classes=transfer.classes, input_shape=transfer.input_shape)
    assert data.train_y.tolist() == [0] and data.test_y.tolist() == [3]
    _save(node / "train" / CLASSES[0] / "b.png", _grey(3))  # the same class in NFC too: two folders, one class
    with pytest.raises(NodeDataError, match="a second folder for class 'carré plein'.*same name in another Unicode"):
        load_node_data(node, classes=transfer.classes, input_shape=transfer.input_shape)


def test_a_name_that_only_looks_alike_is_shown_by_code_point(tmp_path):
    transfer = load_transfer_set(_transfer(tmp_path / "t"))
    node = tmp_path / "node"
    _save(node / "train" / "zеro" / "a.png", _grey(1))  # a Cyrillic "е"
    _save(node / "test" / "zero" / "b.png", _grey(2))
    with pytest.raises(NodeDataError, match="Did you mean 'zero'") as info:
        load_node_data(node, classes=transfer.classes, input_shape=transfer.input_shape)
    assert "U+0435 CYRILLIC SMALL LETTER IE" in str(info.value) and "U+0065 LATIN SMALL LETTER E" in str(info.value)


def test_resizing_is_opt_in_and_exif_orientation_comes_first(tmp_path):
    import torch
    from torchvision.transforms.v2 import functional as F

    transfer = load_transfer_set(_transfer(tmp_path / "t"))
    node = tmp_path / "node"
    big = _grey(5, (12, 10))
    _save(node / "train" / "zero" / "big.png", big)
    stored = _grey(6, (5, 6))  # stored 5x6 (HxW); the EXIF tag says "rotate 90°", so the photo is 6x5
    exif = Image.Exif()
    exif[0x0112] = 6
    _save(node / "test" / "zero" / "photo.png", stored, exif=exif)
    with pytest.raises(NodeDataError, match="big.png: image is 12x10"):
        load_node_data(node, classes=transfer.classes, input_shape=transfer.input_shape)
    data = load_node_data(node, classes=transfer.classes, input_shape=transfer.input_shape,
                          options=ReadOptions(resize=True))
    expected = F.resize(torch.from_numpy(big[None]), [6, 5], antialias=True).numpy()
    np.testing.assert_array_equal(data.train_x[0] * 255, expected.astype(np.float32))
    np.testing.assert_array_equal(data.test_x[0, 0] * 255, np.rot90(stored, -1).astype(np.float32))


def test_links_are_followed_only_inside_the_node_folder(tmp_path):
    transfer = load_transfer_set(_transfer(tmp_path / "t"))
    node = _node(tmp_path / "node")
    outside = _save(tmp_path / "elsewhere" / "x.png", _grey(9))
    os.symlink(node / "train" / CLASSES[0] / "a.png", node / "train" / CLASSES[0] / "inside.png")
    read = dict(classes=transfer.classes, input_shape=transfer.input_shape)
    assert load_node_data(node, **read).num_samples == 4
    os.symlink(outside, node / "train" / CLASSES[0] / "out.png")
    with pytest.raises(NodeDataError, match="outside the node's folder") as info:
        load_node_data(node, **read)
    assert "out.png" in str(info.value) and "allow-symlinks=true" in str(info.value)
    assert load_node_data(node, **read, options=ReadOptions(allow_symlinks=True)).num_samples == 5


def test_federation_refuses_bad_folders_before_starting_any_process(tmp_path, capsys):
    fed = _federation(tmp_path / "fed")
    (fed / "node-0" / "train" / CLASSES[0] / "README.txt").write_text("notes")
    _save(fed / "node-2" / "train" / CLASSES[0] / "odd.png", _grey(1, (21, 21)))
    work = tmp_path / "work"
    code = fedkd_main(["federation", "--nodes", "3", "--insecure", "--data", str(fed), "--workdir", str(work),
                       "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "refused before starting anything: 2 problem(s)" in err
    assert "README.txt" in err and "odd.png" in err
    assert not (work / "logs").exists() or not any((work / "logs").iterdir())  # no process was started


def test_docker_supernode_role_checks_the_data_before_starting(tmp_path):
    import subprocess
    import sys

    fed = _federation(tmp_path / "fed")
    (fed / "node-1" / "train" / CLASSES[0] / "README.txt").write_text("notes")
    root = Path(__file__).resolve().parents[1]
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", "FEDKD_INSECURE": "1",
           "FEDKD_SUPERLINK": "127.0.0.1:9", "FEDKD_PARTITION_ID": "1", "FEDKD_NUM_PARTITIONS": "3",
           "FLWR_HOME": str(tmp_path / "home"), "PYTHONPATH": str(root),
           "FEDKD_DATA_DIR": str(fed / "node-1"), "FEDKD_TRANSFER_DIR": str(fed / "transfer")}
    # not a dry run: the check runs where the data are; a node that got past it would give up at once
    argv = ["bash", str(root / "docker" / "entrypoint.sh"), "supernode", "--max-retries", "0", "--max-wait-time", "1"]
    bad = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "README.txt: not a PNG/JPEG image" in bad.stderr
    assert "has the problems listed above" in bad.stderr

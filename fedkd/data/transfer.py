"""The public transfer set X_t as a folder on disk, and the image reading both it and node data share.

A deployment cannot build X_t from a dataset (the server must hold no private data), so X_t is a
folder that the server and every node read: ``classes.txt`` (class names, one per line, in label
index order) plus either ``transfer.npz`` (array ``x``) or a flat folder of PNG/JPEG images read in
sorted filename order. Every reader here gives the same float32 array on every host, so the
fingerprint of what a node read can be compared with the server's, exactly as in simulation.

Pixels on disk are uint8 and are read back as ``uint8 / 255`` in float32, computed the way
``fedkd.data.datasets`` scales its uint8 datasets, so an image written from an array whose values
are exactly ``k/255`` reads back bit-identical (see ``fedkd.data.export``).

Images are decoded with PIL, the library behind torchvision's default ImageFolder loader, and
imported only when images are read, so importing ``fedkd.data`` stays cheap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedkd.data.federation import fingerprint
from fedkd.files import UnsafeInput, npz_members, read_text

__all__ = [
    "CLASSES_FILE",
    "IMAGE_EXTENSIONS",
    "TRANSFER_NPZ",
    "DataFolderError",
    "TransferSet",
    "TransferSetError",
    "load_transfer_set",
    "read_classes",
    "safe_class_name",
    "write_classes",
]

CLASSES_FILE = "classes.txt"
TRANSFER_NPZ = "transfer.npz"
# Bounds checked before reading: what a node must predict on every round, and what a data file may inflate to.
MAX_TRANSFER_IMAGES = 100_000
MAX_NPZ_BYTES = 4 * 2**30
MAX_CLASSES_BYTES = 2**20
# PNG and JPEG only: both are decoded by torchvision everywhere, and PNG is lossless.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

_UINT8_SCALE = np.float32(255.0)


class DataFolderError(ValueError):
    """Data on disk are missing or malformed; the message names the path and what is wrong."""


class TransferSetError(DataFolderError):
    """The transfer-set folder is missing, malformed, or disagrees with what is expected."""


@dataclass(frozen=True, eq=False)
class TransferSet:
    """The public, unlabelled transfer set X_t read from a folder.

    Attributes
    ----------
    x : numpy.ndarray of float32, shape (M, C, H, W)
        Images with values in [0, 1]. Read-only.
    classes : tuple of str
        Class names in label index order (from ``classes.txt``); they are also the folder
        names of every node's ImageFolder data.
    fingerprint : str
        ``fedkd.data.fingerprint(x)``: what server and nodes compare to agree on X_t.
    path : pathlib.Path
        The folder it was read from.
    """

    x: np.ndarray
    classes: tuple[str, ...]
    fingerprint: str
    path: Path

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image: the shape every node's images must have."""
        return tuple(int(s) for s in self.x.shape[1:])


# --------------------------------------------------------------------------- class names


def safe_class_name(name: str) -> str:
    """Folder name for a class: ``/`` and ``\\`` become ``_``, surrounding whitespace is dropped.

    Class names double as ImageFolder folder names, so they must be one path component on every
    OS. Fashion-MNIST's ``"T-shirt/top"`` becomes ``"T-shirt_top"``; ``classes.txt`` then lists
    the folder names, so reading never needs the mapping back.

    Raises
    ------
    ValueError
        If nothing usable is left (empty, ``.``/``..``, a leading ``.`` that would hide the
        folder, or a control character).
    """
    if not isinstance(name, str):
        raise ValueError(f"class name must be a str, got {name!r}")
    safe = name.replace("/", "_").replace("\\", "_").strip()
    if not safe or safe.startswith(".") or any(ord(ch) < 32 for ch in safe):
        raise ValueError(f"class name {name!r} cannot be a folder name (empty, leading '.', or control characters)")
    return safe


def read_classes(path: str | os.PathLike, *, error: type[DataFolderError] = TransferSetError) -> tuple[str, ...]:
    """Read ``classes.txt``: one class name per line, in label index order.

    Trailing blank lines are ignored; blank lines in between, duplicates and names that are not
    safe folder names (see :func:`safe_class_name`) are errors, because each name must map to
    exactly one index and one folder.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: missing {CLASSES_FILE} (class names, one per line, in label index order)")
    try:
        text = read_text(path, MAX_CLASSES_BYTES, CLASSES_FILE)  # a sparse 1 TB classes.txt is refused unread
    except UnsafeInput as exc:
        raise error(f"{path}: cannot read class names ({exc})") from None
    lines = [line.rstrip("\r\n").strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise error(f"{path}: no class names")
    seen: dict[str, int] = {}
    for i, name in enumerate(lines):
        if not name:
            raise error(f"{path}: line {i + 1} is blank; every line up to the last must name a class")
        try:
            ok = safe_class_name(name) == name
        except ValueError:
            ok = False
        if not ok:
            raise error(f"{path}: line {i + 1} {name!r} is not a safe folder name (no '/', '\\', leading '.')")
        if name in seen:
            raise error(f"{path}: class {name!r} appears on lines {seen[name] + 1} and {i + 1}")
        seen[name] = i
    return tuple(lines)


def write_classes(path: str | os.PathLike, classes: Sequence[str]) -> None:
    """Write ``classes.txt`` (one name per line); the names must already be safe folder names."""
    for name in classes:
        if safe_class_name(name) != name:
            raise ValueError(f"class name {name!r} is not a safe folder name; map it with safe_class_name first")
    if len(set(classes)) != len(classes):
        raise ValueError(f"class names are not unique: {list(classes)}")
    Path(path).write_text("".join(f"{name}\n" for name in classes), encoding="utf-8")


# --------------------------------------------------------------------------- images


def is_image_file(name: str) -> bool:
    """Whether a file name has a PNG/JPEG extension (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def uint8_to_float(u8: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1], the same operation ``fedkd.data.datasets`` uses."""
    return u8.astype(np.float32) / _UINT8_SCALE


def match_channels(img: np.ndarray, channels: int, where: str, error: type[DataFolderError]) -> np.ndarray:
    """Convert a (c, H, W) image (uint8, or float in [0, 1]) to ``channels`` channels when unambiguous.

    Unambiguous, hence done: dropping an alpha channel that is fully opaque; grey to RGB by
    repeating the channel; RGB to grey when R == G == B at every pixel. Anything else (a real
    colour image for a grey model, transparency) would need a choice the data owner should make,
    so it is an error naming ``where``.
    """
    c = img.shape[0]
    opaque = 255 if img.dtype == np.uint8 else 1
    if c in (2, 4):
        if not np.all(img[-1] == opaque):
            raise error(f"{where}: image has a transparent alpha channel; save it without transparency")
        img, c = img[:-1], c - 1
    if c == channels:
        return img
    if c == 1 and channels == 3:
        return np.repeat(img, 3, axis=0)
    if c == 3 and channels == 1:
        if np.array_equal(img[0], img[1]) and np.array_equal(img[0], img[2]):
            return img[:1]
        raise error(f"{where}: a colour (RGB) image where greyscale (1 channel) images are expected")
    raise error(f"{where}: image has {c} channel(s), expected {channels}")


# PIL modes read as they are, and the lossless conversion for the others (bilevel and palette images).
_PIL_KEEP = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}
_PIL_CONVERT = {"1": "L", "P": "RGBA", "PA": "RGBA"}


def decode_image_file(
    path: str | os.PathLike, error: type[DataFolderError], expected_shape: tuple[int, int, int] | None = None
) -> np.ndarray:
    """Decode one PNG/JPEG with PIL, as torchvision's default ImageFolder loader does; uint8 (C, H, W).

    Unlike ``torchvision.datasets.folder.pil_loader`` the image is not forced to RGB, so a
    greyscale file stays one channel and the channel decision is made by :func:`match_channels`,
    which refuses what would be a guess. (``torchvision.io.decode_image`` is deprecated as of
    torchvision 0.29 and warns on every call, hence PIL.) With ``expected_shape`` height and
    width must agree exactly: images are never resized, since that would silently change data.
    """
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # decoding is lazy; force it here so a truncated file fails now
            mode = im.mode
            if mode in _PIL_CONVERT:
                im = im.convert(_PIL_CONVERT[mode])
            elif mode not in _PIL_KEEP:
                raise error(f"{path}: PIL mode {mode!r} is not an 8-bit greyscale/RGB image")
            img = np.asarray(im, dtype=np.uint8)
    except DataFolderError:
        raise
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError
        raise error(f"{path}: unreadable or corrupt image ({exc})") from exc
    img = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    if expected_shape is not None:
        img = match_channels(img, expected_shape[0], str(path), error)
        if img.shape[1:] != tuple(expected_shape[1:]):
            raise error(
                f"{path}: image is {img.shape[1]}x{img.shape[2]} (HxW), expected "
                f"{expected_shape[1]}x{expected_shape[2]}; images are not resized"
            )
    return np.ascontiguousarray(img)


def write_png_file(img: np.ndarray, path: str | os.PathLike) -> None:
    """Write a uint8 (C, H, W) image, C in {1, 3}, as a lossless PNG that :func:`decode_image_file` reads back."""
    from PIL import Image

    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[0] not in (1, 3):
        raise ValueError(f"expected uint8 (1 or 3, H, W), got {img.dtype} {img.shape}")
    pixels = img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(pixels)).save(path, format="PNG")  # 2-D uint8 is "L", (H, W, 3) "RGB"


def npz_arrays(path: Path, keys: Sequence[str], error: type[DataFolderError]) -> dict[str, np.ndarray]:
    """Read the named arrays from an ``.npz`` (no pickles, so a data file cannot run code)."""
    try:
        npz_members(path, MAX_NPZ_BYTES, "data file")  # declared sizes checked before anything is inflated
    except UnsafeInput as exc:
        raise error(f"{path}: not a readable .npz file ({exc})") from None
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise error(f"{path}: lacks array(s) {', '.join(missing)} (has: {', '.join(data.files) or 'none'})")
            return {k: data[k] for k in keys}
    except DataFolderError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError for object arrays, OSError
        raise error(f"{path}: not a readable .npz file ({exc})") from exc


def images_array(
    x: np.ndarray, input_shape: tuple[int, int, int] | None, where: str, error: type[DataFolderError]
) -> np.ndarray:
    """Normalise an ``x`` array from an .npz to float32 (N, C, H, W) in [0, 1].

    Accepts uint8 (scaled by 1/255) or float in [0, 1], shaped (N, H, W), (N, C, H, W) or
    (N, H, W, C). With ``input_shape`` the layout is found by matching H and W (channels-first
    wins in the rare case both fit) and channels are matched as for image files; without it
    (a transfer set defines the shape) the channel axis is axis 1 if it has 1 or 3 entries, else
    the last axis if that does, else the array is refused.
    """
    x = np.asarray(x)
    if x.dtype == np.uint8:
        pass
    elif np.issubdtype(x.dtype, np.floating):
        if x.size and not (np.all(np.isfinite(x)) and x.min() >= 0 and x.max() <= 1):
            raise error(f"{where}: float images must be finite and in [0, 1]")
    else:
        raise error(f"{where}: x has dtype {x.dtype}; use uint8 (0..255) or float in [0, 1]")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim != 4:
        raise error(f"{where}: x has shape {x.shape}; expected (N, H, W), (N, C, H, W) or (N, H, W, C)")
    elif input_shape is not None:
        hw = tuple(input_shape[1:])
        if x.shape[2:] != hw and x.shape[1:3] == hw:
            x = x.transpose(0, 3, 1, 2)
    elif x.shape[1] not in (1, 3):
        # No expected shape (a transfer set defines it): the channel axis is the one of size 1 or 3.
        if x.shape[3] not in (1, 3):
            raise error(f"{where}: x has shape {x.shape}; cannot tell the channel axis (1 or 3 channels)")
        x = x.transpose(0, 3, 1, 2)
    if input_shape is not None:
        if x.shape[2:] != tuple(input_shape[1:]):
            raise error(
                f"{where}: images of shape {x.shape[1:]} do not match the expected (C, H, W) {tuple(input_shape)}"
            )
        if x.shape[1] != input_shape[0]:
            x = np.stack([match_channels(img, input_shape[0], f"{where}[{i}]", error) for i, img in enumerate(x)])
    out = uint8_to_float(x) if x.dtype == np.uint8 else x.astype(np.float32)
    return np.ascontiguousarray(out)


def frozen(a: np.ndarray) -> np.ndarray:
    """Contiguous read-only copy-or-view: loaded data are shared like a simulated federation's."""
    a = np.ascontiguousarray(a)
    a.setflags(write=False)
    return a


# --------------------------------------------------------------------------- transfer set


def load_transfer_set(path: str | os.PathLike, *, input_shape: tuple[int, int, int] | None = None) -> TransferSet:
    """Read the public transfer set from a folder.

    Parameters
    ----------
    path : str or path-like
        Folder holding ``classes.txt`` and either ``transfer.npz`` (array ``x``) or PNG/JPEG
        images directly inside it (read in sorted file-name order; other files are ignored).
        Both at once is refused, since which one is meant would be a guess.
    input_shape : (C, H, W), optional
        Expected image shape. Without it the first image sets the shape and every other image
        must match it exactly; with it, greyscale/RGB are converted where unambiguous.

    Returns
    -------
    TransferSet

    Raises
    ------
    TransferSetError
        Missing folder or ``classes.txt``, no images, an unreadable image (named), images of
        different shapes, or a bad ``transfer.npz``.
    """
    root = Path(path)
    if not root.is_dir():
        raise TransferSetError(f"{root}: transfer-set folder does not exist")
    classes = read_classes(root / CLASSES_FILE)
    npz = root / TRANSFER_NPZ
    images = sorted(
        p.name for p in root.iterdir() if p.is_file() and not p.name.startswith(".") and is_image_file(p.name)
    )
    if len(images) > MAX_TRANSFER_IMAGES:
        raise TransferSetError(f"{root}: {len(images)} images, more than the {MAX_TRANSFER_IMAGES} a transfer set "
                               "may hold (every node predicts on all of them every round)")
    if npz.exists() and images:
        raise TransferSetError(f"{root}: holds both {TRANSFER_NPZ} and {len(images)} image file(s); keep one of them")
    if npz.exists():
        x = images_array(npz_arrays(npz, ["x"], TransferSetError)["x"], input_shape, f"{npz} x", TransferSetError)
    elif images:
        expected = tuple(input_shape) if input_shape is not None else None
        shape = expected
        decoded = []
        for name in images:
            img = decode_image_file(root / name, TransferSetError, expected)
            if shape is None:
                shape = img.shape
            elif img.shape != shape:
                raise TransferSetError(
                    f"{root / name}: image shape (C, H, W) {img.shape} differs from {shape} of {root / images[0]}"
                )
            decoded.append(img)
        x = uint8_to_float(np.stack(decoded))
    else:
        raise TransferSetError(f"{root}: no {TRANSFER_NPZ} and no PNG/JPEG images")
    if x.shape[0] == 0:
        raise TransferSetError(f"{root}: the transfer set is empty")
    if x.shape[0] > MAX_TRANSFER_IMAGES:
        raise TransferSetError(f"{root}: {x.shape[0]} images, more than the {MAX_TRANSFER_IMAGES} a transfer set "
                               "may hold (every node predicts on all of them every round)")
    x = frozen(x)
    return TransferSet(x=x, classes=classes, fingerprint=fingerprint(x), path=root)

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

import hashlib
import os
import unicodedata
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
    "class_key",
    "describe_difference",
    "TransferSet",
    "TransferSetError",
    "load_transfer_set",
    "read_classes",
    "parse_image_size",
    "safe_class_name",
    "transfer_fingerprint",
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
        :func:`transfer_fingerprint` of the pixels and the class list: what server and nodes
        compare to agree on X_t, so a copy whose ``classes.txt`` lists the classes in another
        order (every label would be read as another class) is refused like one with other pixels.
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


def class_key(name: str) -> str:
    """How class names are compared: Unicode NFC, without a byte-order mark or surrounding spaces.

    macOS writes folder names in NFD ("e" + combining accent) and Windows editors start files with
    a BOM; both look identical to the NFC name in ``classes.txt`` but are other strings.
    """
    return unicodedata.normalize("NFC", name.replace("\ufeff", "").strip())


def describe_difference(a: str, b: str) -> str:
    """Where two names that look alike differ, in code points (``'cаt'`` with a Cyrillic ``а``)."""
    if class_key(a) == class_key(b):
        return f"{a!r} and {b!r} are the same name in another Unicode form"
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return (f"character {i + 1} differs: {_code_point(x)} in {a!r}, {_code_point(y)} in {b!r}")
    longer, shorter = (a, b) if len(a) > len(b) else (b, a)
    return f"{longer!r} has extra {', '.join(_code_point(c) for c in longer[len(shorter):])}"


def _code_point(ch: str) -> str:
    return f"U+{ord(ch):04X} {unicodedata.name(ch, 'unnamed character')}"


def transfer_fingerprint(x: np.ndarray, classes: Sequence[str]) -> str:
    """Fingerprint of a transfer set: its pixels (``fedkd.data.fingerprint``) and its class list in order."""
    h = hashlib.sha256(fingerprint(x).encode())
    h.update("\n".join(classes).encode("utf-8"))
    return h.hexdigest()[:16]


def parse_image_size(value: str | int | None, where: str = "image_size") -> tuple[int, int] | None:
    """``"32"`` or ``"32x24"`` (height x width) to ``(H, W)``; ``""``/None/0 to None (no resizing)."""
    if value is None or value == "" or value == 0:
        return None
    text = str(value).strip().lower().replace(" ", "")
    parts = text.split("x")
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 1 for p in parts):
        raise ValueError(f"{where}={value!r}: expected N or HxW in pixels (e.g. 32 or 32x32)")
    return int(parts[0]), int(parts[1])


def read_classes(path: str | os.PathLike, *, error: type[DataFolderError] = TransferSetError) -> tuple[str, ...]:
    """Read ``classes.txt``: one class name per line, in label index order.

    Trailing blank lines are ignored; blank lines in between, duplicates and names that are not
    safe folder names (see :func:`safe_class_name`) are errors, because each name must map to
    exactly one index and one folder. A byte-order mark and surrounding spaces are dropped and
    names are put in Unicode NFC (:func:`class_key`), the form folder names are compared in.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: missing {CLASSES_FILE} (class names, one per line, in label index order)")
    try:
        text = read_text(path, MAX_CLASSES_BYTES, CLASSES_FILE)  # a sparse 1 TB classes.txt is refused unread
    except UnsafeInput as exc:
        raise error(f"{path}: cannot read class names ({exc})") from None
    lines = [class_key(line) for line in text.splitlines()]
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


def open_image(path: str | os.PathLike, error: type[DataFolderError]) -> tuple[np.ndarray, str]:
    """Decode one PNG/JPEG with PIL, as torchvision's default ImageFolder loader does: (uint8 (C, H, W), PIL mode).

    The EXIF orientation is applied first (a phone's portrait photo is stored sideways with a tag
    saying so). Unlike ``torchvision.datasets.folder.pil_loader`` the image is not forced to RGB, so
    a greyscale file stays one channel and the channel decision is made by :func:`match_channels`,
    which refuses what would be a guess. (``torchvision.io.decode_image`` is deprecated as of
    torchvision 0.29 and warns on every call, hence PIL.)
    """
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as im:
            im.load()  # decoding is lazy; force it here so a truncated file fails now
            mode = im.mode
            im = ImageOps.exif_transpose(im)
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
    return np.ascontiguousarray(img), mode


def resize_images(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize (N, C, H, W) or (C, H, W) images (uint8, or float in [0, 1]) to ``size`` = (H, W).

    torchvision's ``resize`` with antialiasing (bilinear), on tensors so .npz arrays and image files
    take the same path; uint8 stays uint8 (rounded), floats are clipped back to [0, 1].
    """
    import torch
    from torchvision.transforms.v2 import functional as F

    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = F.resize(torch.from_numpy(np.array(x)), list(size), antialias=True).numpy()  # a writable copy
    return out if x.dtype == np.uint8 else np.clip(out, 0, 1).astype(x.dtype)


def fit_image(img: np.ndarray, expected_shape: tuple[int, int, int], where: str, error: type[DataFolderError],
              *, resize: bool = False) -> np.ndarray:
    """Match a (c, H, W) image to ``expected_shape``: channels as :func:`match_channels`, and the size
    either exactly (the default: resizing changes data, so it is the owner's choice) or, with
    ``resize``, by :func:`resize_images`."""
    img = match_channels(img, expected_shape[0], where, error)
    h, w = expected_shape[1:]
    if img.shape[1:] != (h, w):
        if not resize:
            raise error(
                f"{where}: image is {img.shape[1]}x{img.shape[2]} (HxW), expected {h}x{w} like the transfer set; "
                f"resize the files to {h}x{w}, or let fedkd resize them: run config image_size={h}x{w} "
                f"(resizes every image of the run) or a node's --node-config image-size=\"{h}x{w}\" (its own images)"
            )
        img = resize_images(img, (h, w))
    return np.ascontiguousarray(img)


def decode_image_file(
    path: str | os.PathLike, error: type[DataFolderError], expected_shape: tuple[int, int, int] | None = None,
    *, resize: bool = False,
) -> np.ndarray:
    """:func:`open_image`, then with ``expected_shape`` :func:`fit_image`; uint8 (C, H, W).

    Height and width must agree exactly unless ``resize`` is set: images are never resized
    silently, since that would change data.
    """
    img, _ = open_image(path, error)
    if expected_shape is not None:
        img = fit_image(img, expected_shape, str(path), error, resize=resize)
    return img


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
    x: np.ndarray, input_shape: tuple[int, int, int] | None, where: str, error: type[DataFolderError],
    *, resize: bool = False,
) -> np.ndarray:
    """Normalise an ``x`` array from an .npz to float32 (N, C, H, W) in [0, 1].

    Accepts uint8 (scaled by 1/255) or float in [0, 1], shaped (N, H, W), (N, C, H, W) or
    (N, H, W, C). With ``input_shape`` the layout is found by matching H and W (channels-first
    wins in the rare case both fit) and channels are matched as for image files; otherwise (a
    transfer set defines the shape, or images are to be resized) the channel axis is axis 1 if it
    has 1 or 3 entries, else the last axis if that does, else the array is refused. With
    ``resize`` images of another size are resized to ``input_shape``'s (:func:`resize_images`).
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
    elif input_shape is not None and x.shape[2:] != tuple(input_shape[1:]) and x.shape[1:3] == tuple(input_shape[1:]):
        x = x.transpose(0, 3, 1, 2)
    elif x.shape[1] not in (1, 3) and (input_shape is None or resize):
        # No size to match: the channel axis is the one of size 1 or 3 (or 2/4 with alpha).
        if x.shape[3] not in (1, 3):
            raise error(f"{where}: x has shape {x.shape}; cannot tell the channel axis (1 or 3 channels)")
        x = x.transpose(0, 3, 1, 2)
    if input_shape is not None:
        if x.shape[2:] != tuple(input_shape[1:]):
            if not resize:
                h, w = input_shape[1:]
                raise error(
                    f"{where}: images of shape {x.shape[1:]} do not match the expected (C, H, W) {tuple(input_shape)}; "
                    f"resize them to {h}x{w}, or set image_size={h}x{w} (run config) or image-size (node config)"
                )
            x = resize_images(x, tuple(input_shape[1:]))
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


def load_transfer_set(
    path: str | os.PathLike, *, input_shape: tuple[int, int, int] | None = None,
    image_size: tuple[int, int] | None = None,
) -> TransferSet:
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
    image_size : (H, W), optional
        Resize every image to this size (the run's ``image_size``); the fingerprint is that of
        the resized images, so every party must use the same size.

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
        raw = npz_arrays(npz, ["x"], TransferSetError)["x"]
        if image_size is not None:
            x = images_array(raw, None, f"{npz} x", TransferSetError)
            x = images_array(x, (x.shape[1], *image_size), f"{npz} x", TransferSetError, resize=True)
            if input_shape is not None:
                x = images_array(x, tuple(input_shape), f"{npz} x", TransferSetError)
        else:
            x = images_array(raw, input_shape, f"{npz} x", TransferSetError)
    elif images:
        shape = tuple(input_shape) if input_shape is not None else None
        decoded = []
        for name in images:
            img, _ = open_image(root / name, TransferSetError)
            if shape is None:
                shape = (img.shape[0], *(image_size or img.shape[1:]))
            if image_size is not None or shape[0] != img.shape[0]:
                img = fit_image(img, shape, str(root / name), TransferSetError, resize=image_size is not None)
            if img.shape != shape:
                raise TransferSetError(
                    f"{root / name}: image shape (C, H, W) {img.shape} differs from {shape} of {root / images[0]}"
                    + ("" if image_size else "; resize the files, or set the run's image_size to resize them all")
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
    return TransferSet(x=x, classes=classes, fingerprint=transfer_fingerprint(x, classes), path=root)

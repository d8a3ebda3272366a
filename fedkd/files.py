"""Reading what someone else may have put on disk: only regular files and folders, and bounded.

Why: a FIFO where a file is expected blocks ``open`` for ever, ``/dev/zero`` never ends, and a small
compressed file can inflate to gigabytes. Every path the program reads from a config, a node folder
or a run folder goes through :func:`regular_file` / :func:`regular_dir` first, and archives are
checked against their declared sizes (:func:`npz_members`) before anything is inflated.
"""
from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

# Longest client-supplied text written to a log line or the console (reasons, fingerprints, names).
MAX_LOGGED_CHARS = 200


class UnsafeInput(ValueError):
    """A path is not a regular file/folder, or a file is larger than it may be; the message names it."""


def _stat(path: Path, what: str) -> os.stat_result:
    try:
        return os.stat(path)  # follows symlinks; a loop is ELOOP, reported like any other OSError
    except FileNotFoundError:
        raise UnsafeInput(f"{what} not found: {path}") from None
    except OSError as exc:
        raise UnsafeInput(f"{what} {path} cannot be read: {exc.strerror or exc}") from None


def regular_file(path: str | Path, what: str = "file", max_bytes: int | None = None) -> Path:
    """``path`` if it is a regular file (no FIFO, device, socket or folder) of at most ``max_bytes``."""
    path = Path(path)
    st = _stat(path, what)
    if not stat.S_ISREG(st.st_mode):
        raise UnsafeInput(f"{what} {path} is not a regular file ({_kind(st.st_mode)})")
    if max_bytes is not None and st.st_size > max_bytes:
        raise UnsafeInput(f"{what} {path} is {st.st_size} bytes, more than the {max_bytes} allowed")
    return path


def regular_dir(path: str | Path, what: str = "folder") -> Path:
    path = Path(path)
    st = _stat(path, what)
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafeInput(f"{what} {path} is not a folder ({_kind(st.st_mode)})")
    return path


def read_bytes(path: str | Path, max_bytes: int, what: str = "file") -> bytes:
    """The whole file, refused unread if it is not regular or is larger than ``max_bytes``."""
    path = regular_file(path, what, max_bytes)
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)  # the file may grow between stat and read
    if len(data) > max_bytes:
        raise UnsafeInput(f"{what} {path} is more than the {max_bytes} bytes allowed")
    return data


def read_text(path: str | Path, max_bytes: int, what: str = "file") -> str:
    try:
        return read_bytes(path, max_bytes, what).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeInput(f"{what} {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def npz_members(path: str | Path, max_bytes: int, what: str = "archive", stored_only: bool = False
                ) -> dict[str, int]:
    """{member: declared size} of a ``.npz``, checked before anything is inflated.

    The declared (uncompressed) sizes together may not exceed ``max_bytes``; Python's zipfile never reads
    past a member's declared size, so the check bounds what reading the archive can allocate.
    stored_only: refuse compressed members (``np.savez`` never compresses, so a compressed member in a
    file we wrote means someone else made it).
    """
    path = regular_file(path, what)
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise UnsafeInput(f"{what} {path} is corrupt or truncated ({type(exc).__name__}: {exc})") from None
    total = 0
    for info in infos:
        if stored_only and info.compress_type != zipfile.ZIP_STORED:
            raise UnsafeInput(f"{what} {path}: entry {info.filename!r} is compressed; this file is written "
                              "uncompressed, so it was not written by fedkd")
        total += info.file_size
    if total > max_bytes:
        raise UnsafeInput(f"{what} {path} declares {total} bytes uncompressed, more than the {max_bytes} allowed")
    return {info.filename: info.file_size for info in infos}


def clip(text: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """Client-supplied text made safe for one log line: control characters escaped, cut to ``limit``."""
    s = str(text)
    escaped = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in s[:limit])
    if len(s) > limit or len(escaped) > limit:
        return f"{escaped[:limit]}... ({len(s)} chars)"
    return escaped


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISREG, "a file")):
        if test(mode):
            return name
    return "not a file"

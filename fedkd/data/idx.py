"""Reader for the IDX format used by MNIST and Fashion-MNIST.

An IDX file starts with a 4-byte magic number: two zero bytes, one byte naming the
element type and one byte giving the number of dimensions. Then come that many
big-endian uint32 dimension sizes, then the elements themselves in row-major order
(big-endian for multi-byte types). Files may be gzip-compressed.
"""

from __future__ import annotations

import os
import zlib

import numpy as np

__all__ = ["IdxFormatError", "read_idx", "parse_idx"]

# Element type codes of the IDX format -> big-endian numpy dtypes.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_GZIP_MAGIC = b"\x1f\x8b"
# The largest IDX file of a supported dataset (MNIST/Fashion-MNIST training images) is 47 MB inflated.
MAX_IDX_BYTES = 256 * 2**20


class IdxFormatError(ValueError):
    """Raised when a file is not a well-formed IDX file (bad header, wrong length)."""


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode the bytes of an (uncompressed) IDX file.

    Parameters
    ----------
    raw : bytes
        The whole file content.
    source : str
        Name used in error messages (usually the file path).

    Returns
    -------
    numpy.ndarray
        Array with the shape given by the header, in native byte order.

    Raises
    ------
    IdxFormatError
        If the magic number is wrong, the type code is unknown, or the payload size
        does not match the dimensions in the header (truncated or padded file).
    """
    if len(raw) < 4:
        raise IdxFormatError(f"{source}: too short to be an IDX file ({len(raw)} bytes, need a 4-byte magic number)")
    if raw[0] != 0 or raw[1] != 0:
        raise IdxFormatError(
            f"{source}: bad IDX magic number {raw[:4].hex()} (first two bytes must be zero)"
        )
    type_code, ndim = raw[2], raw[3]
    if type_code not in _IDX_DTYPES:
        raise IdxFormatError(f"{source}: unknown IDX element type code 0x{type_code:02x}")
    if ndim == 0:
        raise IdxFormatError(f"{source}: IDX header declares 0 dimensions")
    header_len = 4 + 4 * ndim
    if len(raw) < header_len:
        raise IdxFormatError(
            f"{source}: truncated IDX header ({len(raw)} bytes, header needs {header_len} for {ndim} dims)"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    payload = len(raw) - header_len
    if payload != expected:
        raise IdxFormatError(
            f"{source}: IDX payload has {payload} bytes but header shape {shape} of {dtype.name} "
            f"needs {expected} (file truncated or corrupt)"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header_len).reshape(shape)
    # Copy into native byte order: the buffer is read-only and big-endian.
    return data.astype(dtype.newbyteorder("="))


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file from disk, gzip-compressed or plain (detected from content).

    Parameters
    ----------
    path : str or path-like
        File to read.

    Returns
    -------
    numpy.ndarray
        See :func:`parse_idx`.
    """
    from fedkd.files import UnsafeInput, read_bytes

    path = os.fspath(path)
    try:
        raw = read_bytes(path, MAX_IDX_BYTES, "IDX file")  # a regular file (no FIFO or device), bounded
    except UnsafeInput as exc:
        raise IdxFormatError(str(exc)) from None
    if raw[:2] == _GZIP_MAGIC:
        try:  # inflated at most to the bound: a small gzip bomb stops there
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            raw = inflater.decompress(raw, MAX_IDX_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise IdxFormatError(f"{path}: corrupt gzip stream ({exc})") from exc
        if len(raw) > MAX_IDX_BYTES or inflater.unconsumed_tail:
            raise IdxFormatError(f"{path}: inflates to more than {MAX_IDX_BYTES} bytes, larger than any dataset "
                                 "file it could be")
        if not inflater.eof:
            raise IdxFormatError(f"{path}: corrupt gzip stream (truncated)")
    return parse_idx(raw, source=path)

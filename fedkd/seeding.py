"""Derive independent, reproducible seeds for (client, round, purpose) from one run seed."""
from __future__ import annotations

import zlib

import numpy as np


def derive_seed(seed: int, *parts: int | str) -> int:
    """A 31-bit seed that depends on the run seed and every part, order included.

    Strings are hashed with CRC32 (stable across processes, unlike ``hash``).
    """
    words = [int(seed)] + [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1)[0] & 0x7FFFFFFF)

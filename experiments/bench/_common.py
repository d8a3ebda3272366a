"""Helpers every benchmark shares: quiet Flower/Ray, machine facts, medians, the closing JSON line.

Each benchmark prints human-readable lines while it runs and, as its very last line, one JSON object
``{"bench": NAME, "ratio": X, "goal": Y, ...}`` so that scripts (and docs/performance.md) can read it.
"""
from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:  # the device machine has no editable install
    sys.path.insert(0, str(REPO_ROOT))

# Nothing a benchmark starts may reach the network.
for _var, _value in (("FLWR_TELEMETRY_ENABLED", "0"), ("FLWR_DISABLE_UPDATE_CHECK", "1"),
                     ("FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION", "1"), ("RAY_USAGE_STATS_ENABLED", "0")):
    os.environ.setdefault(_var, _value)


def load_average() -> tuple[float, float, float] | None:
    """1/5/15-minute load averages (other engineers' jobs share this machine)."""
    try:
        return os.getloadavg()
    except OSError:
        return None


_LOAD_AT_START = load_average()  # when the benchmark's process started (it imports this module first)


def machine() -> dict:
    """What the numbers were measured on."""
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
            "load_avg_start": _LOAD_AT_START}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as fh:
            info["mem_gb"] = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info


def median(values) -> float:
    values = [v for v in values if v is not None]
    return float(statistics.median(values)) if values else float("nan")


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """(seconds, result) of one call."""
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def say(*parts) -> None:
    """Progress output (stderr-free, flushed, so long runs show where they are)."""
    print(*parts, flush=True)


def finish(bench: str, ratio: float | None, goal: float, **details) -> dict:
    """Print the closing JSON line (always the last line of a benchmark's output) and return it.

    A ratio that could not be measured (None or NaN) is written as null.
    """
    measured = ratio is not None and math.isfinite(ratio)
    record = {"bench": bench, "ratio": round(float(ratio), 4) if measured else None, "goal": goal, **details}
    record.setdefault("machine", machine())
    record["machine"]["load_avg_end"] = load_average()
    print(json.dumps(record, default=_plain), flush=True)
    return record


def _plain(value):
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:
        pass
    return str(value)

"""The summaries recorded before the server became a Flower Strategy are reproduced.

tests/fixtures/reference_runs.py lists the runs (every algorithm, plain, swing, canaries, a robustness
run) and recorded their learning numbers; the same configs must give the same numbers now. On one machine
they are equal bit for bit; across machines of this kind BLAS picks other kernels (``OPENBLAS_CORETYPE``),
training rounds off differently and an accuracy can move by a few test images. So structure, counts and
flags must be equal, and every number within ``TOLERANCE`` (two points of accuracy, about ten test images
of the global test set; a changed algorithm or protocol moves them further).
"""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import reference_runs  # noqa: E402

from fedkd.cli.simulation import run_simulation  # noqa: E402
from fedkd.config import make_config, parse_assignments  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_ray_per_module")]

TOLERANCE = 0.02  # absolute, for accuracies; relative for larger numbers (canary exposures, in bits)


def differences(got, expected, where: str = "summary") -> list[str]:
    """Where ``got`` differs from ``expected`` beyond the tolerance (an empty list when it does not)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if set(got) != set(expected):
            return [f"{where}: keys {sorted(got)} != {sorted(expected)}"]
        return [d for k in expected for d in differences(got[k], expected[k], f"{where}.{k}")]
    if isinstance(expected, list) and isinstance(got, list):
        if len(got) != len(expected):
            return [f"{where}: {len(got)} entries != {len(expected)}"]
        return [d for i, (g, e) in enumerate(zip(got, expected)) for d in differences(g, e, f"{where}[{i}]")]
    if isinstance(expected, float) and isinstance(got, (int, float)) and not isinstance(got, bool):
        ok = got == pytest.approx(expected, abs=TOLERANCE, rel=TOLERANCE)
        return [] if ok else [f"{where}: {got} is not {expected} +- {TOLERANCE}"]
    return [] if got == expected and type(got) is type(expected) else [f"{where}: {got!r} != {expected!r}"]


def test_the_comparison_sees_a_real_change():
    recorded = {"alma": 0.9, "per_client": {"0": 0.95}, "rejected_replies": 0, "in_transfer": True}
    assert differences(dict(recorded, alma=0.91), recorded) == []  # a few test images: rounding across machines
    assert differences(dict(recorded, alma=0.95), recorded) != []
    assert differences(dict(recorded, per_client={"0": 0.95, "1": 0.9}), recorded) != []
    assert differences(dict(recorded, rejected_replies=1), recorded) != []
    assert differences(dict(recorded, in_transfer=1), recorded) != []


@pytest.mark.parametrize("name", sorted(reference_runs.RUNS))
def test_reference_summary_is_reproduced(name, tmp_path):
    cfg = make_config(parse_assignments(reference_runs.assignments(name)))
    summary = run_simulation(cfg, tmp_path / name, progress=False)
    expected = json.loads((reference_runs.HERE / f"{name}.json").read_text())
    assert differences(reference_runs.compared(summary), expected) == []

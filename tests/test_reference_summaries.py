"""The summaries recorded before the server became a Flower Strategy are reproduced exactly.

tests/fixtures/reference_runs.py lists the runs (every algorithm, plain, swing, canaries, a robustness
run) and recorded their learning numbers; the same configs must give the same numbers now.
"""
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "fixtures"))
import reference_runs  # noqa: E402

from fedkd.cli.simulation import run_simulation  # noqa: E402
from fedkd.config import make_config, parse_assignments  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("name", sorted(reference_runs.RUNS))
def test_reference_summary_is_reproduced(name, tmp_path):
    cfg = make_config(parse_assignments(reference_runs.assignments(name)))
    summary = run_simulation(cfg, tmp_path / name, progress=False)
    expected = json.loads((reference_runs.HERE / f"{name}.json").read_text())
    assert reference_runs.compared(summary) == expected

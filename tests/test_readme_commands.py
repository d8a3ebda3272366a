"""The README's `flwr run` line, run as a newcomer types it after the README's activation step (tiny settings)."""
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedkd.deploy.processes import free_port

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.slow


def _readme_line(prefix: str) -> str:
    for block in re.findall(r"```bash\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            if line.startswith(prefix):
                return line.split("  #")[0].strip()
    raise AssertionError(f"README.md has no command starting with {prefix!r}")


def _stop_local_superlink(flwr_home: Path) -> None:
    """`flwr run` leaves its local SuperLink running, detached; stop the one this test started (by its log path)."""
    import psutil

    marker = str(flwr_home / "local-superlink")
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if any(marker in part for part in proc.info["cmdline"] or []):
            for child in proc.children(recursive=True):
                child.kill()
            proc.kill()


def test_readme_flwr_run_line_works_after_the_activation_step(tmp_path):
    line = _readme_line("flwr run .")
    assert line == 'flwr run . --federation-config "num-supernodes=10"'
    activate = _readme_line("source .venv/bin/activate")
    assert activate == "source .venv/bin/activate"
    assert "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1" in _readme_line("export FLWR_")

    # What `source .venv/bin/activate` and the README's export do: the venv's bin first on PATH, no uv sync.
    venv_bin = str(Path(sys.executable).parent)
    env = dict(os.environ, PATH=f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}", FLWR_HOME=str(tmp_path / "home"),
               FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION="1", FLWR_TELEMETRY_ENABLED="0",
               FLWR_DISABLE_UPDATE_CHECK="1", FLWR_LOCAL_SUPERLINK_HTTP_API_PORT=str(free_port()),
               FLWR_LOCAL_CONTROL_API_PORT=str(free_port()), OMP_NUM_THREADS="1")
    out = tmp_path / "run"
    tiny = (f"num_clients=2 rounds=1 transfer_size=50 local_test_size=20 revisit_epochs=1 digest_epochs=1 "
            f"models='mlp' save_models=false server.checkpoint=false out='{out}'")
    argv = shlex.split(line.replace("num-supernodes=10", "num-supernodes=2")) + ["--run-config", tiny, "--stream"]
    try:
        done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        deadline = time.monotonic() + 120  # --stream may return as the log ends, a moment before the summary
        while not (out / "summary.json").is_file() and time.monotonic() < deadline:
            time.sleep(1)
    finally:
        _stop_local_superlink(tmp_path / "home")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] == 1 and summary["num_clients"] == 2

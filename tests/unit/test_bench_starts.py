"""The bench times new processes with their bytecode written once, whatever the shell says."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.starts import start_env


def test_a_timed_process_writes_its_bytecode_under_the_runs_prefix(tmp_path: Path) -> None:
    module = tmp_path / "benchstartprobe.py"
    module.write_text("X = 1\n")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(tmp_path)}
    env = start_env(env)
    subprocess.run([sys.executable, "-c", "import benchstartprobe"], env=env, check=True)
    written = list(Path(env["PYTHONPYCACHEPREFIX"]).rglob("benchstartprobe*.pyc"))
    assert len(written) == 1
    assert not (tmp_path / "__pycache__").exists()

"""The scripts of `scripts/` on their command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def test_transfer_demo_refuses_a_folder_that_is_not_its_own(tmp_path):
    """It replaces its own results on a re-run; `--out runs` used to delete every run."""
    (tmp_path / "my-run").mkdir()
    (tmp_path / "my-run" / "config.yaml").write_text("kept")
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "transfer_demo.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1
    assert "not the demo's (my-run): choose another folder" in done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "my-run" / "config.yaml").read_text() == "kept"
    (tmp_path / "a-file").write_text("kept")
    done = subprocess.run(
        [sys.executable, str(SCRIPTS / "transfer_demo.py"), "--out", str(tmp_path / "a-file")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 1 and "is a file: choose a folder" in done.stderr

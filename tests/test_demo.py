"""The README's first quick-start command: `issuer demo` runs the whole flow and exits 0."""

from __future__ import annotations

import subprocess
import sys


def test_the_demo_runs_the_whole_flow_and_succeeds() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "issuer.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[14/14]" in done.stdout
    assert "demo succeeded" in done.stdout
    assert "signed workflow_job and workflow_run deliveries" in done.stdout

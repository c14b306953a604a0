"""The capabilities docker-compose.yml gives the builder service are enough for its sandbox,
and each is needed: what a builder's trusted side does (a build that leaves files of its ids
in a sticky directory, then its directory removed; a build stopped at its time limit) runs in
a process whose bounding set holds only them (``setpriv``), as in the container, then once
without each. No `KILL` is needed: the service creates each build's user namespace, and the
owner of a user namespace may signal what runs in it. (Docker's seccomp, AppArmor and
masked /proc paths, which compose also lifts, cannot be reproduced without an engine.)"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.deploy.test_compose import service
from tests.image_registry import ImageRegistry

CAPABILITIES = [name.lower() for name in service("builder")["cap_add"]]


def build_with(capabilities: list[str], registry: ImageRegistry, scratch_base: Path) -> int:
    """one_build's exit status under ``capabilities``; 124 (as timeout(1) says) when it did
    not end in time: a build its builder cannot stop (no capability to kill its processes)."""
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    scratch_root = Path(tempfile.mkdtemp(prefix="privileges-", dir=scratch_base))
    scratch_root.chmod(0o711)
    bounding = ",".join(["-all", *(f"+{name}" for name in capabilities)])
    process = subprocess.Popen(
        [
            "setpriv",
            f"--bounding-set={bounding}",
            "--inh-caps=-all",
            sys.executable,
            "-m",
            "tests.deploy.one_build",
            registry.host,
            registry.base,
            str(scratch_root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        return process.wait(timeout=45)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # its sandbox dies with it (--die-with-parent)
        process.wait()
        return 124
    finally:
        shutil.rmtree(scratch_root, ignore_errors=True)


def test_a_sandboxed_build_works_with_only_the_capabilities_compose_gives_the_builder(
    image_registry: ImageRegistry, scratch_base: Path
) -> None:
    assert build_with(CAPABILITIES, image_registry, scratch_base) == 0


@pytest.mark.parametrize("missing", CAPABILITIES)
def test_each_capability_compose_gives_the_builder_is_needed(
    image_registry: ImageRegistry, scratch_base: Path, missing: str
) -> None:
    fewer = [name for name in CAPABILITIES if name != missing]
    assert build_with(fewer, image_registry, scratch_base) != 0

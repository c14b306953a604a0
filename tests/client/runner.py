"""Run ``issuer token`` as a subprocess the way a runner would, feeding its stdout to the sim."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from issuer.sim import GitHubSim, SimJob
from tests.e2e.harness import ForkRun


@dataclass
class Step:
    returncode: int
    stdout: str
    stderr: str
    outputs: dict[str, str]

    @property
    def text(self) -> str:
        return self.stdout + self.stderr


def runner_env(pr: ForkRun, output: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "ISSUER_"))}
    return {
        **env,
        "GITHUB_ACTIONS": "true",
        "GITHUB_REPOSITORY": pr.upstream.full_name,
        "GITHUB_RUN_ID": str(pr.run.id),
        "GITHUB_RUN_ATTEMPT": str(pr.run.run_attempt),
        "GITHUB_EVENT_NAME": "pull_request",
        "GITHUB_OUTPUT": str(output),
        **extra,
    }


def read_outputs(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    pattern = re.compile(r"^([\w-]+)<<(\S+)\n(.*?)\n\2\n", re.M | re.S)
    return {m.group(1): m.group(3) for m in pattern.finditer(path.read_text())}


def run_step(
    *args: str,
    env: dict[str, str],
    sim: GitHubSim | None = None,
    job: SimJob | None = None,
    timeout: float = 60,
) -> Step:
    """Run the client; each stdout line goes to ``job``'s log as the runner would print it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "issuer.cli", "token", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if sim is not None and job is not None:
            sim.print_line(job, line.rstrip("\n"))
    stderr = process.stderr.read()
    process.wait(timeout=timeout)
    return Step(
        process.returncode, "".join(lines), stderr, read_outputs(Path(env["GITHUB_OUTPUT"]))
    )


@contextmanager
def step_in_background(
    *args: str,
    env: dict[str, str],
    sim: GitHubSim | None = None,
    job: SimJob | None = None,
    timeout: float = 60,
) -> Iterator[Future[Step]]:
    """:func:`run_step` in a thread, as a job running alongside another one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool.submit(run_step, *args, env=env, sim=sim, job=job, timeout=timeout)


def assert_no_secret_leaks(step: Step, *, claim: str = "", token: str = "") -> None:
    """The claim id shows only in mask lines (which the runner consumes, never logs); the
    token only in the one mask line, before all else."""
    if claim:
        assert claim not in step.stderr
        assert all(
            line.startswith("::add-mask::") for line in step.stdout.splitlines() if claim in line
        )
    if token:
        lines = step.stdout.splitlines()
        mask = lines.index(f"::add-mask::{token}")
        assert all(token not in line for line in lines[:mask] + lines[mask + 1 :])
        assert token not in step.stderr

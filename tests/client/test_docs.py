"""The README's exit-code table covers every exit code of the workflow step."""

from __future__ import annotations

import re
from pathlib import Path

from issuer.client.codes import ExitCode

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_exit_code_of_the_step_is_in_the_readme() -> None:
    rows = re.findall(r"^\| (\d+)(?:, (\d+))? \|", README.read_text(), re.M)
    documented = {int(code) for row in rows for code in row if code}
    codes = {value for name, value in vars(ExitCode).items() if name.isupper()}
    assert codes <= documented
    assert {130, 143} <= documented  # interrupted by SIGINT, SIGTERM

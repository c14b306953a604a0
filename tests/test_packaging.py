"""What the package promises about the Pythons it runs on."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.specifiers import SpecifierSet

PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"


def test_requires_a_python_whose_tarfile_has_the_data_filter() -> None:
    """The builder extracts contexts with ``tarfile``'s ``data`` filter (3.11.4 and later)."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    supported = SpecifierSet(project["requires-python"])
    assert "3.11.3" not in supported
    assert "3.11.4" in supported

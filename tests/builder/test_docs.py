"""docs/builder.md documents every refusal the service can answer, word for word."""

from __future__ import annotations

from pathlib import Path

import pytest

from issuer.builder.errors import CATALOG

DOC = (Path(__file__).parents[2] / "docs" / "builder.md").read_text()


@pytest.mark.parametrize("reason", sorted(CATALOG))
def test_every_refusal_is_documented_with_its_code_and_description(reason: str) -> None:
    refusal = CATALOG[reason]
    row = next((line for line in DOC.splitlines() if line.startswith(f"| `{reason}` |")), "")
    assert refusal.description in row
    assert f"`{refusal.code}`" in row and str(refusal.status) in row

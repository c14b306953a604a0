"""The import rule of the layout (docs/architecture.md): a lower part never imports a higher one.

``github/``, ``store/`` and ``web/`` are shared by both services and know nothing of them;
``oidc/`` (the issuer service) and ``builder/`` (the relying party) never import each other;
``client/`` (the workflow step) and ``sim/`` (the GitHub simulator) stand on the shared parts
only. Only ``cli.py`` and ``demo.py``, at the root, bring everything together. Each module's
imports are read with ``ast``, so a new upward import fails here the day it is written.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "issuer"

SERVICES = {"oidc", "builder"}
STANDALONE = {"client", "sim"}
SHARED = {"github", "store", "web"}
ROOT = {"cli", "demo"}

FORBIDDEN: dict[str, set[str]] = {
    **{part: SERVICES | STANDALONE | ROOT for part in SHARED},
    "oidc": {"builder"} | STANDALONE | ROOT,
    "builder": {"oidc"} | STANDALONE | ROOT,
    "client": SERVICES | {"sim"} | ROOT,
    "sim": SERVICES | {"client"} | ROOT,
}


def part_of(module: str) -> str | None:
    """``issuer.oidc.watch`` → ``oidc``; None outside the package."""
    names = module.split(".")
    if names[0] != "issuer":
        return None
    return names[1] if len(names) > 1 else ""


def imported_modules(source: str, module: str) -> set[str]:
    """Every module an import statement of ``source`` names, relative imports resolved
    against ``module`` (``from issuer import oidc`` names ``issuer.oidc``)."""
    found: set[str] = set()
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                origin = ".".join([*base, node.module] if node.module else base)
            else:
                origin = node.module or ""
            found.add(origin)
            if origin == "issuer":
                found.update(f"{origin}.{alias.name}" for alias in node.names)
    return found


def violations(source: str, module: str) -> list[str]:
    """The imports of ``module`` that break the rule, as ``module -> imported``."""
    part = part_of(module)
    forbidden = FORBIDDEN.get(part or "", set())
    return sorted(
        f"{module} -> {name}"
        for name in imported_modules(source, module)
        if part_of(name) in forbidden
    )


def package_modules() -> list[tuple[str, Path]]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        names = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if names[-1] == "__init__":
            names.pop()
        modules.append((".".join(names), path))
    return modules


def test_no_module_imports_upward_or_across_the_services() -> None:
    broken = [
        line
        for module, path in package_modules()
        for line in violations(path.read_text(encoding="utf-8"), module)
    ]
    assert broken == []


def test_the_package_root_holds_only_the_console_script_and_the_demo() -> None:
    assert sorted(path.name for path in PACKAGE.glob("*.py")) == [
        "__init__.py",
        "cli.py",
        "demo.py",
    ]


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("issuer.github.client", "from issuer.oidc import config"),
        ("issuer.github.client", "import issuer.oidc.config"),
        ("issuer.store.redis", "from issuer.builder.errors import ApiError"),
        ("issuer.web.http", "from issuer.oidc.metrics import HTTP_LATENCY"),
        ("issuer.oidc.watch", "from issuer.builder import verify"),
        ("issuer.builder.app", "from issuer.oidc.config import ConfigError"),
        ("issuer.builder.app", "from ..oidc import config"),
        ("issuer.client.cli", "from issuer import oidc"),
        ("issuer.sim.app", "from issuer.demo import run_demo"),
    ],
)
def test_an_upward_or_sideways_import_is_caught(module: str, line: str) -> None:
    assert violations(line, module) != []


@pytest.mark.parametrize(
    ("module", "line"),
    [
        ("issuer.oidc.watch", "from issuer.github.client import GitHubClient"),
        ("issuer.builder.app", "from issuer.web.http import BodyLimit"),
        ("issuer.github.client", "from issuer.store import Store"),
        ("issuer.github.client", "from .errors import GitHubNotFound"),
        ("issuer.demo", "from issuer.oidc.app import create_app"),
    ],
)
def test_a_downward_import_is_allowed(module: str, line: str) -> None:
    assert violations(line, module) == []

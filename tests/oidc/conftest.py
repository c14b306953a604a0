"""The GitHub tests' fixtures (a simulator behind a recording transport, an App installation),
for the issuer's tests that build its GitHub access from configuration."""

from tests.github.conftest import (  # noqa: F401  (fixtures)
    app_key,
    clock,
    fork,
    fork_run,
    installed,
    sim,
    transport,
    upstream,
)

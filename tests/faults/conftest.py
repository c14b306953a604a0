from tests.e2e.conftest import github, sim  # noqa: F401  (the same fixtures)

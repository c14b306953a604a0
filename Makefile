# The two commands of the README's quick start: `make demo` and `make test`.
# Each does its own set-up on a fresh machine: the virtualenv, the package, and (for the
# tests) Debian's redis-server, which the test fixtures start on free loopback ports.

PYTHON := $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test lint redis-server

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing Debian's redis-server"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

demo: $(INSTALLED)
	$(VENV)/bin/issuer demo

lint: $(INSTALLED)
	$(VENV)/bin/ruff check issuer tests bench
	$(VENV)/bin/ruff format --check issuer tests bench
	$(VENV)/bin/mypy

test: $(INSTALLED) redis-server lint
	$(VENV)/bin/pytest -q

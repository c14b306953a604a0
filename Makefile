# The two commands of the README's quick start: `make demo` and `make test`.
# Each does its own set-up on a fresh machine: the virtualenv, the package, Debian's packages
# the builders need (buildah, bubblewrap, uidmap, slirp4netns, nftables, docker-registry,
# busybox-static), subordinate ids for the builders' sandboxes, and (for the tests) Debian's
# redis-server, which the test fixtures start on free loopback ports.

PYTHON := $(shell command -v python3.11 || command -v python3)
VENV := .venv
INSTALLED := $(VENV)/.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

BUILDER_PACKAGES := buildah bubblewrap uidmap slirp4netns nftables docker-registry busybox-static
# Each live builder maps 65,536 ids of its own user namespace to a block of these.
SUBIDS := 1000000000-1016777215
ME := $(shell id -un)

.PHONY: demo test lint redis-server builder-host

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

redis-server:
	@command -v redis-server >/dev/null || { \
	  echo "installing Debian's redis-server"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server >/dev/null; }

# The builders' host: Debian's packages (installed where missing) and a range of
# subordinate ids for the service's user (docs/builder.md, "The host").
builder-host:
	@missing=""; \
	for package in $(BUILDER_PACKAGES); do \
	  dpkg -s $$package >/dev/null 2>&1 || missing="$$missing $$package"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian's$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@grep -qs "^$(ME):" /etc/subuid && grep -qs "^$(ME):" /etc/subgid || { \
	  echo "giving $(ME) the subordinate ids $(SUBIDS) for builders' sandboxes"; \
	  $(SUDO) usermod --add-subuids $(SUBIDS) --add-subgids $(SUBIDS) $(ME); }

demo: $(INSTALLED) builder-host
	$(VENV)/bin/issuer demo

lint: $(INSTALLED)
	$(VENV)/bin/ruff check issuer tests bench
	$(VENV)/bin/ruff format --check issuer tests bench
	$(VENV)/bin/mypy

test: $(INSTALLED) redis-server builder-host lint
	$(VENV)/bin/pytest -q

# The issuer's image: `issuer serve` by default; the same image runs `issuer github-sim`.
# Slim, non-root, with a health check. The builder service has a stage of its own
# (`--target builder`, see docker-compose.yml): it needs buildah and bubblewrap, and root.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY issuer ./issuer
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

# The builder service (`docker build --target builder`): buildah builds each pull request's
# image in a sandbox of its own (docs/builder.md, "The sandbox"). It runs as root in its
# container: it maps each builder's ids through newuidmap, owns and cleans up files of those
# ids, and creates cgroups where it may; the builds never run as root. docker-compose.yml
# names each privilege the container needs, and why.
FROM python:3.11-slim AS builder
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      buildah bubblewrap uidmap \
 && rm -rf /var/lib/apt/lists/* \
 && usermod --add-subuids 1000000000-1016777215 --add-subgids 1000000000-1016777215 root
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BUILDER_SCRATCH_ROOT=/var/lib/issuer-builders
WORKDIR /tmp
EXPOSE 8081
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8081/readyz', timeout=2).status != 200)"]
ENTRYPOINT ["issuer"]
CMD ["builder", "serve", "--host", "0.0.0.0", "--port", "8081"]

FROM python:3.11-slim
RUN groupadd --system --gid 10001 issuer \
 && useradd --system --uid 10001 --gid issuer --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin issuer
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
# `issuer serve` answers open long polls at once on SIGTERM, then exits.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status != 200)"]
ENTRYPOINT ["issuer"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]

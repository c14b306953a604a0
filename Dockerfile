# The issuer's image: `issuer serve` by default; the same image runs `issuer builder serve`
# and `issuer github-sim` (see docker-compose.yml). Slim, non-root, with a health check.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY issuer ./issuer
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

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

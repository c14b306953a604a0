"""JSON log lines for the services, each carrying the id of the request it was written for.

One object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
``request_id`` (null outside a request), the access log's own fields where present, and
``exception`` (the type and traceback) when one is logged. What goes into a message is the
caller's business, and callers never put secrets there (see docs/threat-model.md): this
module only adds structure.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import secrets
import sys
from datetime import UTC, datetime
from typing import IO, Any

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)
"""The id of the request being answered in this context (set by the request-id middleware)."""

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")

# Structured fields a record may carry through ``extra=``: only these are written.
FIELDS = ("method", "path", "route", "status", "duration_ms")


def request_id_from(header: str | None) -> str:
    """The caller's ``X-Request-Id`` if it is short and plain, else a new random id."""
    if header is not None and _REQUEST_ID.match(header):
        return header
    return secrets.token_hex(8)


class RequestIdFilter(logging.Filter):
    """Stamps every record with the current request id."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or REQUEST_ID.get(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_json_logging(level: int = logging.INFO, stream: IO[str] | None = None) -> None:
    """Route every logger (uvicorn's included) through one JSON handler on ``stream``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    # httpx logs every URL it fetches, and a job log's download URL is signed: a credential.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)

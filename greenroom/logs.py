"""How greenroom logs: plain text or one JSON object per line, on stderr, never a secret.

``--log-format json`` (or ``GREENROOM_LOG_FORMAT=json``) writes each record as one JSON object
with ``time`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``, then the record's own
fields: the serve command's lifecycle lines carry ``session``, ``project`` and ``event`` (and
``reason``, ``error``, ``restarts`` where the event has them), so that a log shipper can index
them without parsing the message. A record with an exception adds ``exception`` (the
traceback as text). The JSON text is made here rather than by the codec: it is the log's own
format, not the wire's.

Secrets: every record passes :class:`Redact` before it is written, whatever its logger (a
library logging a request at debug level included): the values registered with
:func:`add_secret` (the server's token, the provider's API key) are replaced by ``***``, and
so is anything after ``token=`` in a URL or after ``Bearer`` in a header.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from typing import Any, Final, TextIO

__all__ = ["LOG_FORMATS", "JsonFormatter", "Redact", "add_secret", "setup_logging"]

LOG_FORMATS: Final = ("text", "json")
TEXT_FORMAT: Final = "%(asctime)s %(levelname)s %(message)s"
_MASK: Final = "***"
_SHORTEST_SECRET: Final = 8
_PATTERNS: Final = (
    re.compile(r"(?i)([?&]token=)[^&\s'\"]+"),
    re.compile(r"(?i)(bearer\s+)[^\s'\"]+"),
)
# The attributes every LogRecord has: anything else on a record came from ``extra=``.
_STANDARD: Final = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_secrets: set[str] = set()


def add_secret(value: str | None) -> None:
    """Never write ``value`` in a log line from now on (a value under 8 characters is no
    secret worth the name, and masking it would garble ordinary words)."""
    if value and len(value) >= _SHORTEST_SECRET:
        _secrets.add(value)


def redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + _MASK, text)
    return text


class Redact(logging.Filter):
    """Renders the record's message once, without secrets (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        for name in _extra_names(record):
            value = getattr(record, name)
            if isinstance(value, str):
                setattr(record, name, redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.datetime.fromtimestamp(record.created, datetime.UTC)
        line: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in _extra_names(record):
            line[name] = _plain(getattr(record, name))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        return json.dumps(line, ensure_ascii=False)


def _extra_names(record: logging.LogRecord) -> list[str]:
    return [name for name in vars(record) if name not in _STANDARD and not name.startswith("_")]


def _plain(value: object) -> object:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def setup_logging(level: int, log_format: str = "text", stream: TextIO | None = None) -> None:
    """Log records at ``level`` and above to ``stream`` (stderr), as ``log_format``."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(Redact())
    json_lines = log_format == "json"
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # trio-websocket logs every handshake and close at INFO, httpx2 every model request.
    chatty = logging.WARNING if level > logging.DEBUG else logging.NOTSET
    for name in ("trio-websocket", "httpx2"):
        logging.getLogger(name).setLevel(chatty)

"""The log's two formats and its redaction of secrets, through a real handler."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from greenroom.logs import add_secret, setup_logging


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield stream
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_the_record_and_its_fields(captured: io.StringIO) -> None:
    setup_logging(logging.INFO, "json", captured)
    log = logging.getLogger("greenroom.test")
    log.info("session %s: turn started", "s-1", extra={"session": "s-1", "project": "p",
                                                       "event": "loadingChanged"})  # fmt: skip
    log.debug("not shown at info")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it broke")
    first, second = (json.loads(line) for line in captured.getvalue().splitlines())
    assert first["message"] == "session s-1: turn started"
    assert (first["level"], first["logger"]) == ("info", "greenroom.test")
    assert (first["session"], first["project"], first["event"]) == ("s-1", "p", "loadingChanged")
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert second["level"] == "error"
    assert "ValueError: boom" in second["exception"]


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_secrets_never_reach_the_log(captured: io.StringIO, log_format: str) -> None:
    setup_logging(logging.DEBUG, log_format, captured)
    add_secret("the-server-token-123456")
    log = logging.getLogger("trio-websocket")
    log.debug("request %r", {"target": "/ws?token=abc123&x=1", "auth": b"Bearer zzz999"})
    log.info("said %s", "the-server-token-123456", extra={"note": "the-server-token-123456"})
    try:
        raise RuntimeError("failed with the-server-token-123456")
    except RuntimeError:
        log.exception("and a traceback")
    text = captured.getvalue()
    for secret in ("abc123", "zzz999", "the-server-token-123456"):
        assert secret not in text
    assert "token=***&x=1" in text
    assert "Bearer ***" in text

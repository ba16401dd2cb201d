"""A parsed client frame to the command it names, every field checked.

Commands are checked by hand rather than structured with cattrs: the protocol wants one short
error per field ("field 'session' must be a string"), and bools must not pass for ints.
Decisions the protocol leaves open, made here:

- Unknown extra fields of a command are ignored, so that a newer client can talk to an older
  server. Optional fields (``since``, ``focusProject``'s ``project``) may be absent or ``null``.
- ``id`` must be an integer in the 64-bit range (so that it fits msgpack too) or a string;
  ``true``/``false`` are not integers. Without a usable ``id`` the reply has ``"re": null``.
- Every string a command carries must be valid Unicode (no lone surrogates from ``\\ud800``
  escapes), so that whatever the server echoes can always be encoded again.
- A session id must be 1 to 128 characters (``invalid_argument`` otherwise); ``since`` must be
  0 or more; a tool call id 1 to 256 characters and a denial's ``reason`` at most 2,000.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Final

import attrs

from greenroom.protocol.commands import COMMANDS
from greenroom.protocol.errors import BadRequest, GreenroomError, InvalidArgument
from greenroom.protocol.frames import ErrorReply, Incoming
from greenroom.protocol.parsing import is_text
from greenroom.protocol.values import (
    MAX_TEMPERATURE,
    MAX_TOKENS,
    PRESET_NAME,
    validate_project_name,
)

MAX_SESSION_CHARS: Final = 128
MAX_MODEL_CHARS: Final = 200
MAX_CALL_CHARS: Final = 256
MAX_REASON_CHARS: Final = 2000

_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what msgpack can carry
_SHOWN_CHARS = 40  # how much of a bad value an error message quotes
_SHA256 = re.compile("[0-9a-fA-F]{64}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def _string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"field {name!r} must be a string")
    if not is_text(value):
        raise BadRequest(f"field {name!r} is not valid Unicode text")
    return value


def _identifier(what: str, limit: int) -> Callable[[str, object], str]:
    """The check of an id field: a string of 1 to ``limit`` characters, ``what`` it names."""

    def check(name: str, value: object) -> str:
        text = _string(name, value)
        if not 0 < len(text) <= limit:
            raise InvalidArgument(f"invalid {what}: use 1 to {limit} characters")
        return text

    return check


_session = _identifier("session id", MAX_SESSION_CHARS)
_call = _identifier("tool call id", MAX_CALL_CHARS)


def _project(name: str, value: object) -> str:
    project = _string(name, value)
    if len(project) > 64:  # checked first so that the message does not quote it all
        raise InvalidArgument("invalid project name: longer than 64 characters")
    return validate_project_name(project)


def _model(name: str, value: object) -> str:
    model = _string(name, value)
    if not 0 < len(model) <= MAX_MODEL_CHARS or not model.isprintable():
        raise InvalidArgument(
            f"invalid model name: use 1 to {MAX_MODEL_CHARS} printable characters"
        )
    return model


def _temperature(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(f"field {name!r} must be a number")
    if not (math.isfinite(value) and 0 <= value <= MAX_TEMPERATURE):
        raise InvalidArgument(f"field {name!r} must be from 0 to {MAX_TEMPERATURE:g}")
    return float(value)


def _integer(low: int, high: int, shown: str) -> Callable[[str, object], int]:
    """The check of an integer field from ``low`` to ``high`` (``high`` written as ``shown``)."""

    def check(name: str, value: object) -> int:
        if type(value) is not int:
            raise BadRequest(f"field {name!r} must be an integer")
        if not low <= value <= high:
            raise InvalidArgument(f"field {name!r} must be from {low} to {shown}")
        return value

    return check


_max_tokens = _integer(1, MAX_TOKENS, str(MAX_TOKENS))
_index = _integer(0, 2**31 - 1, "2**31 - 1")
_seq = _integer(0, 2**63 - 1, "2**63 - 1")


def _preset(name: str, value: object) -> str:
    preset = _string(name, value)
    if not PRESET_NAME.fullmatch(preset):
        raise InvalidArgument(
            "invalid preset name: use 1 to 64 letters, digits, '_', '.' or '-', starting with "
            "a letter or digit"
        )
    return preset


def _hash(name: str, value: object) -> str:
    digest = _string(name, value)
    if not _SHA256.fullmatch(digest):
        raise InvalidArgument(f"field {name!r} must be a sha256 digest: 64 hexadecimal digits")
    return digest.lower()


def _allow(name: str, value: object) -> bool:
    if type(value) is not bool:
        raise BadRequest(f"field {name!r} must be true or false")
    return value


def _reason(name: str, value: object) -> str:
    reason = _string(name, value)
    if len(reason) > MAX_REASON_CHARS:
        raise InvalidArgument(f"field {name!r} is over {MAX_REASON_CHARS} characters")
    return reason


_CHECKS = {
    "session": _session,
    "project": _project,
    "content": _string,
    "since": _seq,
    "model": _model,
    "temperature": _temperature,
    "maxTokens": _max_tokens,
    "preset": _preset,
    "hash": _hash,
    "index": _index,
    "preview": _string,
    "call": _call,
    "allow": _allow,
    "reason": _reason,
}
_FIELDS: dict[type[Any], tuple[tuple[str, bool], ...]] = {
    cls: tuple((f.name, f.default is attrs.NOTHING) for f in attrs.fields(cls))
    for cls in COMMANDS.values()
}
"""Per command class: (field, required) pairs; an optional field defaults to None."""


def command_from_wire(obj: dict[Any, Any]) -> Incoming | ErrorReply:
    """A command frame already parsed (a dict), checked field by field: what the codec's
    :meth:`~greenroom.protocol.codec.Codec.decode` gives back, and how a cluster node reads a
    command forwarded to it. Never raises."""
    if "id" not in obj:
        return ErrorReply(re=None, code="bad_request", message="missing field 'id'")
    id_ = obj["id"]
    if not (
        (type(id_) is int and _INT_MIN <= id_ <= _INT_MAX) or (type(id_) is str and is_text(id_))
    ):
        return ErrorReply(
            re=None, code="bad_request", message="'id' must be a 64-bit integer or a string"
        )
    if "op" not in obj:
        return ErrorReply(re=id_, code="bad_request", message="missing field 'op'")
    op = obj["op"]
    if not isinstance(op, str):
        return ErrorReply(re=id_, code="bad_request", message="field 'op' must be a string")
    cls = COMMANDS.get(op)
    if cls is None:
        return ErrorReply(re=id_, code="unknown_op", message=f"unknown op {_show(op)}")
    try:
        kwargs: dict[str, Any] = {}
        for name, required in _FIELDS[cls]:
            value = obj.get(name)
            if value is None:
                if required:
                    raise BadRequest(f"missing field {name!r}")
                continue
            kwargs[name] = _CHECKS[name](name, value)
    except GreenroomError as error:
        return ErrorReply.of(id_, error)
    return Incoming(id=id_, command=cls(**kwargs))

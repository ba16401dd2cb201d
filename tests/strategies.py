"""Hypothesis strategies that several test modules share, written once.

``summaries()`` draws every field of :class:`Summary` (tests/test_strategies.py fails when a
field is added and not drawn here); a test narrows a field by passing its own strategy, and
says why.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from greenroom.protocol.events import PendingApproval, Summary

# Text with what JSON and msgpack treat specially: quotes, escapes, control characters,
# non-ASCII, lone surrogates.
tricky_texts = st.lists(
    st.sampled_from(['"', "\\", "\n", "\x00", "é", "✓", "\ud83d", "\udfff", "a"])
).map("".join)
texts = st.text(max_size=30) | tricky_texts
project_names = st.from_regex(r"[a-z0-9_-][a-z0-9._-]{0,63}", fullmatch=True)
statuses = st.sampled_from(["idle", "running", "stopping", "interrupted", "failed"])

def summary_fields(text: st.SearchStrategy[str] = texts) -> dict[str, st.SearchStrategy[Any]]:
    """A strategy per field of :class:`Summary`, its texts drawn from ``text``."""
    return {
        "session": text,
        "project": text,
        "name": text,
        "status": statuses,
        "loading": st.booleans(),
        "message_count": st.integers(0, 2**64 - 1),
        "last_activity": st.floats(),  # NaN and infinities too
        "preview": st.none() | text,
        "queued": st.lists(text, max_size=3).map(tuple),
        "error": st.none() | text,
        "waiting": st.booleans(),
        "model": st.none() | text,
        "temperature": st.none() | st.floats(0, 2),
        "max_tokens": st.none() | st.integers(1, 2**31 - 1),
        "preset": st.none() | text,
        "system_prompt": st.none() | text,
        "mcp_servers": st.none() | st.lists(text, max_size=2).map(tuple),
        "tools": st.dictionaries(text, st.sampled_from(["allow", "ask", "deny"]), max_size=2),
        "approval": st.none() | st.builds(PendingApproval, call=text, tool=text),
    }


def summaries(
    text: st.SearchStrategy[str] = texts, **fields: st.SearchStrategy[Any]
) -> st.SearchStrategy[Summary]:
    """Any summary, its texts drawn from ``text``; ``fields`` replace the strategies of the
    fields they name."""
    drawn = summary_fields(text)
    unknown = fields.keys() - drawn.keys()
    assert not unknown, f"Summary has no fields {sorted(unknown)}"
    return st.builds(Summary, **{**drawn, **fields})

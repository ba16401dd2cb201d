"""The converter's hand-written hooks against what cattrs would generate for the same class."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
from cattrs.gen import make_dict_unstructure_fn, override
from hypothesis import given
from hypothesis import strategies as st

from greenroom.protocol.convert import (
    QUEUED_PREVIEW_CHARS,
    camel,
    converter,
    structure,
    summary_to_record,
    summary_to_wire,
    unstructure,
)
from greenroom.protocol.events import Summary
from tests import strategies

summaries = strategies.summaries(
    message_count=st.integers(),
    last_activity=st.floats() | st.integers(),  # an int, if one ever gets in, stays an int
)


def generated_hook() -> Callable[[Summary], dict[str, Any]]:
    """What cattrs generates for Summary with camelCase keys (the hook summary_to_record
    replaced)."""
    renames = {a.name: override(rename=camel(a.name)) for a in attrs.fields(Summary)}
    return make_dict_unstructure_fn(Summary, converter, **renames)


GENERATED = generated_hook()


@given(summary=summaries)
def test_summary_to_record_is_what_cattrs_generates(summary: Summary) -> None:
    wire, generated = summary_to_record(summary), GENERATED(summary)
    # repr: same keys in the same order, same values of the same types (a list, not a tuple;
    # -0.0 is not 0.0), and a NaN compares equal to itself.
    assert repr(list(wire.items())) == repr(list(generated.items()))
    assert [type(v) for v in wire.values()] == [type(v) for v in generated.values()]


@given(summary=summaries)
def test_the_converter_uses_it_and_structures_it_back(summary: Summary) -> None:
    assert converter.get_unstructure_hook(Summary) is summary_to_record
    assert unstructure(summary) == summary_to_record(summary) or math.isnan(summary.last_activity)
    back = structure(summary_to_record(summary), Summary)
    assert attrs.evolve(back, last_activity=0.0) == attrs.evolve(summary, last_activity=0.0)


@given(summary=summaries, long=st.text(min_size=QUEUED_PREVIEW_CHARS + 1, max_size=400))
def test_a_summary_on_the_wire_carries_previews_of_its_queue(summary: Summary, long: str) -> None:
    summary = attrs.evolve(summary, queued=(*summary.queued, long))
    wire = summary_to_wire(summary)
    assert wire["queued"] == [text[:QUEUED_PREVIEW_CHARS] for text in summary.queued]
    assert len(wire["queued"][-1]) == QUEUED_PREVIEW_CHARS
    assert summary_to_record(summary)["queued"][-1] == long  # stored whole
    state_only = {"queued", "systemPrompt", "mcpServers", "tools"}
    assert not state_only & (set(wire) - {"queued"})  # the preset's details: state only
    assert wire["preset"] == summary.preset
    assert {k: v for k, v in wire.items() if k != "queued"} == {
        k: v for k, v in summary_to_record(summary).items() if k not in state_only
    } or math.isnan(summary.last_activity)

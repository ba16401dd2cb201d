"""The shared strategies keep up with the classes they draw."""

from __future__ import annotations

import attrs

from greenroom.protocol.events import Summary
from tests.strategies import summary_fields


def test_every_summary_field_is_drawn() -> None:
    assert set(summary_fields()) == {field.name for field in attrs.fields(Summary)}

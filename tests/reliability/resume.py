"""What a client saw of each session, checked for the durable-before-visible promise.

A :class:`Seen` follows one session's events as a UI would (seq, the partial text at offsets,
the committed messages by index) and fails the moment anything contradicts what it already
holds: a seq that goes back, text at an offset that differs from the text it has (two replies
spliced together), a gap in the text, a committed reply that does not begin with what was
streamed of it. After a kill -9 and a restart the same object goes on with the replay that
``subscribe`` with ``since`` gives, so a splice across the restart fails here too.
"""

from __future__ import annotations

from typing import Any

import attrs

JSON = dict[str, Any]
# Every connection gets these, subscribed or not: one sent before a subscribe may come again
# in its replay, with the same seq (docs/protocol.md).
LIFECYCLE = {"sessionCreated", "sessionUpdated", "sessionDeleted", "loadingChanged",
             "sessionRestarted", "sessionFailed"}  # fmt: skip


@attrs.define
class Seen:
    session: str
    last: int = 0
    partial: str = ""
    messages: dict[int, JSON] = attrs.Factory(dict)
    deleted: bool = False
    events: int = 0
    lifecycle: dict[int, JSON] = attrs.Factory(dict)

    @classmethod
    def of(cls, state: JSON) -> Seen:
        """What a client holds after ``openSession`` gave it ``state``."""
        streaming = state.get("streaming") or {}
        return cls(
            session=state["session"],
            last=state["seq"],
            partial=streaming.get("content") or "",
            messages=dict(enumerate(state["messages"])),
        )

    def see(self, event: JSON) -> None:
        seq = event.get("seq")
        if seq is None or event.get("session") != self.session:
            return
        name, data = event["event"], event.get("data") or {}
        if name in LIFECYCLE:
            earlier = self.lifecycle.get(seq)
            assert earlier is None or earlier == event, f"{self.session}: seq {seq} differs"
            if seq <= self.last:
                return  # a repeat
            self.lifecycle[seq] = event
            if seq > self.last + 1:
                # Sent to every connection, subscribed or not: a client not (yet) subscribed
                # again after a reconnect gets it ahead of the events before it, which its
                # replay brings, this one again included. (A subscribed stream never jumps
                # to a lifecycle event: seqs skip only inside merged deltas.)
                return
        assert seq > self.last, f"{self.session}: seq {seq} after {self.last} ({name})"
        self.last = seq
        self.events += 1
        if name == "streamingUpdate":
            offset, delta = data["offset"], data["delta"]
            assert offset <= len(self.partial), f"{self.session}: a gap at seq {seq}"
            overlap = min(len(self.partial) - offset, len(delta))
            assert self.partial[offset : offset + overlap] == delta[:overlap], (
                f"{self.session}: seq {seq} rewrites text it already had (a splice)"
            )
            if offset + len(delta) >= len(self.partial):
                self.partial = self.partial[:offset] + delta
        elif name == "messageAdded":
            message = data["message"]
            if message["role"] == "assistant":
                content = message.get("content") or ""
                assert content.startswith(self.partial), (
                    f"{self.session}: committed reply at seq {seq} is not what was streamed"
                )
                self.partial = ""
            self.messages[data["index"]] = message
        elif name == "loadingChanged" and not data.get("loading"):
            self.partial = ""
        elif name == "sessionDeleted":
            self.deleted = True

    def check_state(self, state: JSON) -> int:
        """Every message this client saw is in ``state`` (openSession's), at its index;
        returns how many were checked."""
        got = state["messages"]
        for index, message in self.messages.items():
            assert index < len(got) and got[index] == message, (
                f"{self.session} lost message {index}"
            )
        return len(self.messages)

"""The session actor: one chat session of one project, and the turns it runs.

A turn is the generation loop: stream a step from the provider (``streamingUpdate`` deltas),
commit the assistant message (``messageAdded``), run its tool calls one by one inside the
project folder, commit each result, and repeat until the model stops or ``max_steps``.

State machine (``status``)::

    idle --sendMessage--> running --turn ends--> idle | failed
    running --length limit--> idle                         (reason truncated)
    running --stopGeneration--> stopping --> idle          (partial text committed, stopped)
    running --shutdown or crash--> interrupted --resume--> running
    any --supervisor gives up--> failed --sendMessage or resumeSession--> running

A tool call whose policy is ``ask`` (see :mod:`greenroom.agent.policy`) keeps the turn running
while it waits: ``approvalRequested`` is published and the summary's ``approval`` names the
call until ``approveToolCall`` answers it (allowed: the tool runs; denied: the model reads a
refusal) or the turn ends (a stop answers the call as not run). A turn interrupted while
waiting (shutdown, crash, kill -9) keeps ``approval`` and is resumed at once whatever the
resume policy, as waiting costs nothing: it waits for the same call again, without asking the
model again and without publishing another ``approvalRequested``. While it waits, the turn
gives its slot of ``max_concurrent_turns`` back.

Every change is an event applied to the actor's own state and published on the bus with the
session's next ``seq``; nothing else changes the state, so the persistence mirror, which applies
the same events, can rebuild this actor exactly after a crash.

(One file of some 750 lines: the turn, its queue, its stops and its approvals change the same
state under the same lock, and their races are only clear read together.)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import aclosing, asynccontextmanager
from pathlib import Path
from typing import Any, cast

import attrs
import trio

from greenroom.actors.bus import EventBus
from greenroom.actors.mailbox import Inbox, Reply, Request
from greenroom.agent.mcp.hub import McpRegistry
from greenroom.agent.policy import Decision, ToolPolicy
from greenroom.agent.provider import (
    CompletionRequest,
    Finish,
    Provider,
    TextDelta,
    ToolCallDelta,
)
from greenroom.agent.toolbox import STOPPED_CALL, Toolbox, open_toolbox
from greenroom.config import Config
from greenroom.presets import Preset
from greenroom.protocol import commands as cmd
from greenroom.protocol.chat import Message, Thinking, ToolCall
from greenroom.protocol.errors import (
    Conflict,
    GreenroomError,
    InvalidArgument,
    LimitReached,
    NotFound,
    ProviderError,
    TooLarge,
)
from greenroom.protocol.events import (
    ApprovalRequested,
    EndReason,
    Event,
    EventData,
    LoadingChanged,
    MessageAdded,
    PartialToolCall,
    SessionDeleted,
    SessionRestarted,
    SessionUpdated,
    StreamingUpdate,
    queued_preview,
)
from greenroom.protocol.state import SessionState, SessionView
from greenroom.supervisor import RestartInfo

logger = logging.getLogger("greenroom.session")

CUT_TOOL_CALL = (
    "error: not run: the reply was cut off by the model's length limit (max_tokens) before "
    "this call was complete"
)
"""The result of a tool call in a truncated reply: its arguments may be cut mid-way, so it is
not run, but it is answered, as every API requires of a tool call."""
DENIED_BY_POLICY = "error: not run: the tool policy denies {tool}"
DENIED_BY_USER = "error: not run: the user denied this call"
STOPPED_WAITING = "error: not run: the turn was stopped while this call waited for approval"


def denied(reason: str | None) -> str:
    """The result the model reads for a call a user denied, with the reason they gave."""
    return DENIED_BY_USER + (f": {reason}" if reason else "")


@attrs.frozen(kw_only=True)
class StartChat:
    """Stop, and start an empty chat under the history name ``name`` (``newChat``, named by
    the runtime)."""

    name: str
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class SetSettings:
    """Use these for this session's next turns; a None leaves that setting as it was. With a
    ``preset``, everything the preset carries is set first (what it leaves unset goes back to
    the server's), then the explicit settings."""

    preset: Preset | None = None
    model: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    reply: Reply[None] = attrs.field(factory=Reply, eq=False, repr=False)


@attrs.frozen(kw_only=True)
class GetState:
    reply: Reply[SessionView] = attrs.field(factory=Reply, eq=False, repr=False)


SessionMessage = Request[Any] | StartChat | SetSettings | GetState
"""A session's commands come as they are, in a :class:`Request`: ``sendMessage`` (replies
whether it was queued), ``stopGeneration`` (the queued texts dropped), ``cancelQueued`` (the
text removed), ``resumeSession``, ``approveToolCall`` and ``deleteSession`` (from the manager,
which terminates the actor after it)."""


def describe_provider_error(error: ProviderError) -> str:
    """The message a user sees when a turn fails."""
    return f"{error.kind}: {error.message}"


def provider_error_kind(described: str | None) -> str | None:
    """The kind of a failure as :func:`describe_provider_error` wrote it (None if it is not
    one): the metrics count failed turns by it."""
    kind, colon, _ = (described or "").partition(": ")
    return kind if colon and kind.replace("_", "").isalpha() and kind.islower() else None


@attrs.define(eq=False)
class _ToolCallBuilder:
    """Assembles one streamed tool call: pieces of ``arguments`` are concatenated in order."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: list[str] = attrs.Factory(list)

    def add(self, delta: ToolCallDelta) -> None:
        self.id = self.id or delta.id
        self.name = self.name or delta.name
        if delta.arguments:
            self.arguments.append(delta.arguments)

    def partial(self) -> PartialToolCall:
        return PartialToolCall(
            index=self.index, id=self.id, name=self.name, arguments="".join(self.arguments)
        )

    def build(self, turn_step: str) -> ToolCall:
        if not self.name:
            raise ProviderError("bad_response", f"tool call {self.index} arrived with no name")
        call_id = self.id or f"call_{turn_step}_{self.index}"
        return ToolCall(id=call_id, name=self.name, arguments="".join(self.arguments))


@attrs.define(eq=False)
class SessionActor:
    """Runs one session. Built fresh on every (re)start from the state the mirror holds."""

    state: SessionState
    bus: EventBus
    provider: Provider
    config: Config
    project_dir: Path
    restart: RestartInfo | None = None
    # Shared by every session when ``max_concurrent_turns`` is set.
    turn_slots: trio.CapacityLimiter | None = None
    # The runtime's MCP servers and approvals (None: file tools only).
    mcp: McpRegistry | None = None
    _toolbox: Toolbox | None = attrs.field(default=None, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _turn_scope: trio.CancelScope | None = attrs.field(default=None, init=False)
    _turn_done: trio.Event | None = attrs.field(default=None, init=False)
    _cancel_reason: EndReason = attrs.field(default="stopped", init=False)
    _emit_lock: trio.StrictFIFOLock = attrs.field(factory=trio.StrictFIFOLock, init=False)
    # Held by every change of the queue and by the end of a turn, from its look at the queue
    # until the next turn runs (or none does): so that each sees the queue and the turn as the
    # one before left them, and a queued text runs as a turn or is removed, never both, never
    # neither (see _run_turn).
    _queue_lock: trio.StrictFIFOLock = attrs.field(factory=trio.StrictFIFOLock, init=False)
    _deleted: bool = attrs.field(default=False, init=False)
    # The user's answer to the pending approval (call, allowed, reason), until the turn takes
    # it; ``_answered`` wakes the turn.
    _verdict: tuple[str, bool, str | None] | None = attrs.field(default=None, init=False)
    _answered: trio.Event = attrs.field(factory=trio.Event, init=False)
    _holding_slot: bool = attrs.field(default=False, init=False)

    async def run(
        self,
        inbox: Inbox[SessionMessage],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve ``inbox`` until asked to stop; then interrupt the running turn, keeping its
        partial output, so that the session resumes where it was. Its MCP servers stop after
        the turn has ended."""
        async with (
            open_toolbox(self.project_dir, self.state.project, self.mcp) as toolbox,
            trio.open_nursery() as nursery,
        ):
            self._toolbox = toolbox
            self._nursery = nursery
            task_status.started()
            await self._recover()
            async for message in inbox:
                await self._handle(message)
            if self._turn_scope is not None:
                await self._cancel_turn("interrupted")

    # -- commands ---------------------------------------------------------------------------

    async def _handle(self, message: SessionMessage) -> None:
        if self._deleted:
            # It reached the actor behind the deletion, before the manager stopped it: refused,
            # and nothing is published after sessionDeleted; a deletion again (the manager's,
            # retried after its first ask timed out) is done already.
            if isinstance(message, Request) and isinstance(message.command, cmd.DeleteSession):
                message.reply.send(None)
            else:
                message.reply.fail(Conflict(f"session {self.state.session} was deleted"))
            return
        try:
            match message:
                case Request(command=command, reply=reply):
                    reply.send(await self._execute(command))
                case StartChat(name=name, reply=reply):
                    await self._new_chat(name)
                    reply.send(None)
                case SetSettings(reply=reply):
                    await self._set_settings(message)
                    reply.send(None)
                case GetState(reply=reply):
                    reply.send(self.state.view())
        except GreenroomError as error:
            message.reply.fail(error)

    async def _execute(self, command: cmd.Command[Any]) -> Any:
        match command:
            case cmd.SendMessage(content=content):
                return await self._send_message(content)
            case cmd.StopGeneration():
                return await self._stop()
            case cmd.CancelQueued(index=index, preview=preview):
                return await self._cancel_queued(index, preview)
            case cmd.ResumeSession():
                self._resume()
            case cmd.ApproveToolCall(call=call, allow=allow, reason=reason):
                await self._approve(call, allow, reason)
            case cmd.DeleteSession():
                await self._stop()
                await self._emit(SessionDeleted())
                self._deleted = True
            case _:
                raise InvalidArgument(f"a session does not execute {command.op}")
        return None

    async def _send_message(self, content: str) -> bool:
        limits = self.config.limits
        if len(content) > limits.max_message_chars:
            raise TooLarge(
                f"message is {len(content)} characters; the limit is {limits.max_message_chars}"
            )
        async with self._queue_lock:
            if self._turn_scope is None and not self.state.queued:
                self._start_turn(content)
                return False
            if len(self.state.queued) >= limits.max_queued_messages:
                raise LimitReached(
                    f"session {self.state.session} already has "
                    f"{limits.max_queued_messages} queued messages"
                )
            await self._update(queued=(*self.state.queued, content))
            if self._turn_scope is None:
                # Texts that a restart left queued (no turn took them) go first, in order.
                await self._take_queued()
                self._start_turn(None, committed=True)
            return True

    async def _cancel_queued(self, index: int, preview: str) -> str:
        """Remove the queued text at ``index`` if it is the one ``preview`` names: a text
        that a turn took meanwhile moved the rest, and is no longer in the queue."""
        if index < 0:
            raise InvalidArgument(f"index must be 0 or more, not {index}")
        async with self._queue_lock:
            queued = self.state.queued
            if index >= len(queued):
                raise Conflict(
                    f"no queued message at index {index} of session {self.state.session} "
                    f"(it has {len(queued)}): the queue changed"
                )
            text = queued[index]
            if preview not in (text, queued_preview(text)):
                raise Conflict(
                    f"the queued message at index {index} of session {self.state.session} "
                    "is not the one given: the queue changed"
                )
            await self._update(queued=(*queued[:index], *queued[index + 1 :]))
            return text

    async def _set_settings(self, settings: SetSettings) -> None:
        wanted: dict[str, Any] = {}
        if settings.preset is not None:
            wanted.update(settings.preset.session_settings())
        for name in ("model", "temperature", "max_tokens"):
            value = getattr(settings, name)
            if value is not None:
                wanted[name] = value
        changes = {
            name: value for name, value in wanted.items() if value != getattr(self.state, name)
        }
        if changes:
            await self._update(**changes)

    async def _stop(self) -> tuple[str, ...]:
        async with self._queue_lock:
            discarded = tuple(self.state.queued)
            if discarded:
                await self._update(queued=())
        if self._turn_scope is not None:
            await self._cancel_turn("stopped")
        return discarded

    async def _approve(self, call: str, allow: bool, reason: str | None) -> None:
        pending = self.state.approval
        if pending is None or self._turn_scope is None:
            raise Conflict(f"session {self.state.session} is not waiting for an approval")
        if pending.call != call:
            raise NotFound(
                f"session {self.state.session} has no tool call {call!r} waiting for "
                f"approval (it waits for {pending.call!r})"
            )
        self._verdict = (call, allow, reason)
        self._answered.set()
        # Published before the reply: a client told "ok" never sees the call still waiting.
        await self._update(approval=None)

    def _resume(self) -> None:
        if self._turn_scope is not None:
            raise Conflict(f"session {self.state.session} is running")
        if self.state.status not in ("interrupted", "failed"):
            raise Conflict(
                f"session {self.state.session} is {self.state.status}: nothing to resume"
            )
        self._start_turn(None)

    async def _new_chat(self, name: str) -> None:
        await self._stop()
        await self._update(
            name=name, message_count=0, status="idle", error=None, approval=None
        )

    # -- recovery ---------------------------------------------------------------------------

    async def _recover(self) -> None:
        """Pick up after a crash or a restore: a turn that was running is interrupted,
        keeps its partial text as a stopped message, and resumes once under policy auto."""
        if self.restart is not None:
            await self._emit(
                SessionRestarted(reason=self.restart.reason, restarts=self.restart.restarts)
            )
        # A partial left by a crash is kept even when the session was given up meanwhile.
        await self._commit_partial()
        if self.state.status in ("running", "stopping"):
            reason: EndReason = "stopped" if self.state.status == "stopping" else "interrupted"
            await self._emit(LoadingChanged(loading=False, reason=reason))
        if self.state.status == "interrupted" and (
            self.config.resume == "auto" or self.state.approval is not None
        ):
            self._start_turn(None)  # its end takes the queued texts, as any turn's does
        elif self.config.resume == "auto" and self.state.queued and self.state.status == "idle":
            # Stopped after a turn ended but before the next text was taken (two journal
            # writes when the bus was full): that text runs now.
            async with self._queue_lock:
                await self._take_queued()
                self._start_turn(None, committed=True)

    # -- turns ------------------------------------------------------------------------------

    def _start_turn(self, content: str | None, *, committed: bool = False) -> None:
        """Run a turn for ``content`` (None: continue the chat as it is). ``committed``: the
        turn's user message is in the chat already (a queued text, see _run_turn)."""
        assert self._nursery is not None
        if content is None and not committed:
            # A started turn is logged by the lifecycle log from its loadingChanged; a resumed
            # one is said here too, as it often starts before any log is listening (at boot).
            logger.info(
                "resuming the turn of session %s (project %s)",
                self.state.session, self.state.project,
            )  # fmt: skip
        # Set synchronously, so that a message handled before the turn task runs sees it.
        self._turn_scope = trio.CancelScope()
        self._turn_done = trio.Event()
        self._nursery.start_soon(self._run_turn, content, self._turn_scope)

    async def _cancel_turn(self, reason: EndReason) -> None:
        # A turn that was ending as it was cancelled may have taken the next queued text: that
        # one started as a turn, and is cancelled too, so that none runs once this returns.
        while self._turn_scope is not None:
            assert self._turn_done is not None
            self._cancel_reason = reason
            self._turn_scope.cancel()
            await self._turn_done.wait()

    async def _run_turn(self, content: str | None, scope: trio.CancelScope) -> None:
        reason: EndReason = "completed"
        error: str | None = None
        try:
            if content is not None:
                await self._commit(Message(role="user", content=content))
            await self._emit(LoadingChanged(loading=True))
            await self._update()
            with scope:
                try:
                    async with self._turn_slot():
                        reason = await self._steps()
                except ProviderError as failure:
                    reason, error = "failed", describe_provider_error(failure)
            if scope.cancelled_caught:
                reason = self._cancel_reason
                if reason == "stopped":
                    await self._update(status="stopping")
            await self._commit_partial()
            await self._emit(LoadingChanged(loading=False, reason=reason, error=error))
            await self._update()
            ended = reason in ("completed", "truncated", "failed")
            async with self._queue_lock:
                following = None
                if ended and not scope.cancel_called and self.state.queued and not self._deleted:
                    # Taken out of the queue and committed as the user message back to back:
                    # while the bus has room there is no checkpoint between the two events, so
                    # the journal writes them in one batch, and a kill -9 finds the text in the
                    # queue or in the chat.
                    following = await self._take_queued()
                # Still under the lock: from here on, a text sent, cancelled or stopped sees
                # the next turn running, or none.
                self._end_turn(scope, following)
        finally:
            self._end_turn(scope, None)

    async def _take_queued(self) -> str:
        """Take the first queued text out of the queue and commit it as the user message of
        the next turn (under the queue lock, before that turn starts)."""
        following, *rest = self.state.queued
        await self._update(queued=tuple(rest))
        await self._commit(Message(role="user", content=following))
        return following

    def _end_turn(self, scope: trio.CancelScope, following: str | None) -> None:
        """Let go of the turn of ``scope`` (once: a second call does nothing), and start the
        one for the queued text ``following`` (committed already) before anyone sees none."""
        if self._turn_scope is not scope:
            return
        done = self._turn_done
        self._turn_scope = self._turn_done = None
        if following is not None:
            self._start_turn(None, committed=True)
        if done is not None:
            done.set()

    @asynccontextmanager
    async def _turn_slot(self) -> AsyncIterator[None]:
        """Hold one of the shared turn slots while the turn runs (but for its waits for an
        approval); while none is free, the session is still loading and its summary says it
        is ``waiting``."""
        slots = self.turn_slots
        if slots is None:
            yield
            return
        await self._take_slot(slots)
        try:
            yield
        finally:
            if self._holding_slot:
                self._holding_slot = False
                slots.release()

    async def _take_slot(self, slots: trio.CapacityLimiter) -> None:
        if slots.available_tokens == 0:
            await self._update(waiting=True)
            await slots.acquire()
            self._holding_slot = True
            await self._update(waiting=False)
        else:
            await slots.acquire()
            self._holding_slot = True

    async def _steps(self) -> EndReason:
        """Run steps until the model stops; ``truncated`` when its length limit cut a reply."""
        steps = self._steps_taken()
        while True:
            for call in self._unanswered_tool_calls():
                await self._answer(call)
            if steps >= self.config.max_steps or self._turn_finished():
                return "completed"
            steps += 1
            message, finish = await self._stream_step(steps)
            if message.content or message.tool_calls or finish != "length":
                await self._commit(message)  # a cut reply with nothing in it is not kept
            if finish == "length":
                for call in message.tool_calls or ():
                    await self._commit(
                        Message(role="tool", content=CUT_TOOL_CALL, tool_call_id=call.id)
                    )
                return "truncated"
            if not message.tool_calls:
                return "completed"

    async def _stream_step(self, step: int) -> tuple[Message, str]:
        """The step's assistant message, and the finish reason it came with."""
        assert self._toolbox is not None
        temperature, max_tokens = self.state.temperature, self.state.max_tokens
        request = CompletionRequest(
            messages=tuple(self.state.messages),
            tools=await self._toolbox.schemas(
                first_step=step == 1, servers=self.state.mcp_servers
            ),
            model=self.state.model or self.config.model,
            # A preset's system prompt takes the place of the server's.
            system_prompt=self.state.system_prompt or self.config.system_prompt,
            temperature=self.config.temperature if temperature is None else temperature,
            max_tokens=self.config.max_tokens if max_tokens is None else max_tokens,
        )
        calls: dict[int, _ToolCallBuilder] = {}
        thinking: list[Thinking] = []
        offset = 0
        finish: str | None = None
        async with aclosing(self.provider.stream(request)) as chunks:
            async for chunk in chunks:
                if type(chunk) is TextDelta:  # most chunks: _emit's common case, inline
                    text = chunk.text
                    if text:
                        update = StreamingUpdate(offset=offset, delta=text)
                        if self._emit_lock.locked():
                            await self._emit(update)
                        else:
                            event = self._next_event(update)
                            stopped_at = self.bus.publish_nowait(event)
                            if stopped_at is not None:
                                await self._publish_rest(event, stopped_at)
                        offset += len(text)
                    continue
                match chunk:
                    case ToolCallDelta(index=index):
                        calls.setdefault(index, _ToolCallBuilder(index)).add(chunk)
                        partial = tuple(calls[i].partial() for i in sorted(calls))
                        await self._emit(
                            StreamingUpdate(offset=offset, delta="", tool_calls=partial)
                        )
                    case Thinking():
                        thinking.append(chunk)
                    case Finish(reason=reason):
                        finish = reason
                    case _:
                        pass  # usage and reasoning are not part of the message
        if finish is None:
            raise ProviderError("bad_response", "the model's stream ended without finishing")
        streaming = self.state.streaming
        text = streaming.text if streaming is not None else ""
        tool_calls = tuple(calls[i].build(f"{self.state.seq}_{step}") for i in sorted(calls))
        message = Message(
            role="assistant",
            content=text or None,
            tool_calls=tool_calls or None,
            thinking=tuple(thinking) or None,
        )
        return message, finish

    async def _answer(self, call: ToolCall) -> None:
        # A tool that ran has its result committed, so a resumed turn never runs it twice.
        # File tools are short and shielded: a stop waits for the one in progress. An MCP
        # call may take long: a stop cancels it, and it is answered as stopped.
        assert self._toolbox is not None
        pending = self.state.approval
        if pending is not None and pending.call == call.id:
            decision: Decision = "ask"  # asked before an interruption: the same question waits
        else:
            preset = ToolPolicy(rules=cast(Mapping[str, Decision], self.state.tools))
            decision = await self._toolbox.decide(call.name, self.config.tool_policy, preset)
        if decision == "deny":
            refusal = DENIED_BY_POLICY.format(tool=call.name)
            with trio.CancelScope(shield=True):
                await self._commit(Message(role="tool", content=refusal, tool_call_id=call.id))
            return
        if decision == "ask":
            allowed, reason = await self._ask(call)
            if not allowed:
                with trio.CancelScope(shield=True):
                    await self._commit(
                        Message(role="tool", content=denied(reason), tool_call_id=call.id)
                    )
                return
        try:
            result = await self._toolbox.run(call.name, call.arguments)
        except trio.Cancelled:
            with trio.CancelScope(shield=True):
                await self._commit(
                    Message(role="tool", content=STOPPED_CALL, tool_call_id=call.id)
                )
            raise
        with trio.CancelScope(shield=True):
            await self._commit(Message(role="tool", content=result, tool_call_id=call.id))

    async def _ask(self, call: ToolCall) -> tuple[bool, str | None]:
        """Wait for a user to allow or deny ``call``: whether it was allowed, and the reason
        given. A stop answers it as not run; an interruption leaves it waiting, for the
        resumed turn."""
        pending = self.state.approval
        if pending is None or pending.call != call.id:
            self._verdict = None  # one for an earlier call, left by a stop: not this one's
            await self._emit(
                ApprovalRequested(call=call.id, tool=call.name, arguments=call.arguments)
            )
            await self._update()
        slots = self.turn_slots if self._holding_slot else None
        if slots is not None:
            self._holding_slot = False
            slots.release()  # nobody's turn waits behind one that waits for a person
        try:
            while self._verdict is None or self._verdict[0] != call.id:
                self._answered = trio.Event()
                await self._answered.wait()
            _, allowed, reason = self._verdict
            self._verdict = None
            if slots is not None:
                await self._take_slot(slots)  # a stop may come while it waits for one
        except trio.Cancelled:
            if self._cancel_reason != "interrupted":
                with trio.CancelScope(shield=True):
                    await self._commit(
                        Message(role="tool", content=STOPPED_WAITING, tool_call_id=call.id)
                    )
            raise
        return allowed, reason

    def _steps_taken(self) -> int:
        steps = 0
        for message in reversed(self.state.messages):
            if message.role == "user":
                break
            if message.role == "assistant" and not message.stopped:
                steps += 1
        return steps

    def _turn_finished(self) -> bool:
        last = self.state.messages[-1] if self.state.messages else None
        return last is not None and last.role == "assistant" and not last.stopped and (
            not last.tool_calls
        )

    def _unanswered_tool_calls(self) -> Iterator[ToolCall]:
        answered: set[str] = set()
        for message in reversed(self.state.messages):
            if message.role == "tool" and message.tool_call_id is not None:
                answered.add(message.tool_call_id)
                continue
            if message.role == "assistant" and message.tool_calls:
                yield from (call for call in message.tool_calls if call.id not in answered)
            return

    # -- events -----------------------------------------------------------------------------

    async def _commit(self, message: Message) -> None:
        await self._emit(MessageAdded(index=len(self.state.messages), message=message))

    async def _commit_partial(self) -> None:
        partial = self.state.partial_message()
        if partial is not None and partial.content:
            await self._commit(partial)

    async def _update(self, **changes: Any) -> None:
        """Publish the summary with ``changes`` applied and a fresh ``lastActivity``."""

        def updated() -> SessionUpdated:
            summary = self.state.summary()
            return SessionUpdated(
                summary=attrs.evolve(summary, last_activity=self.config.now(), **changes)
            )

        await self._emit(updated)

    async def _emit(self, data: EventData | Callable[[], EventData]) -> None:
        """Apply and publish one event. ``data`` may be a function, called under the emit
        lock, for an event computed from the state (so concurrent updates never go stale)."""
        lock = self._emit_lock
        if not lock.locked():
            # The common case, with no checkpoint at all: nothing else is mid-publication, and
            # every attached mailbox has room.
            event = self._next_event(data)
            stopped_at = self.bus.publish_nowait(event)
            if stopped_at is not None:
                await self._publish_rest(event, stopped_at)
            return
        async with lock:
            event = self._next_event(data)
            await self._publish_shielded(self.bus.publish(event))

    async def _publish_rest(self, event: Event, stopped_at: int) -> None:
        """Finish publishing ``event`` (applied already), which stopped at a full mailbox,
        holding the emit lock meanwhile so that no later event overtakes it."""
        lock = self._emit_lock
        lock.acquire_nowait()
        try:
            await self._publish_shielded(self.bus.publish_rest(event, stopped_at))
        finally:
            lock.release()

    def _next_event(self, data: EventData | Callable[[], EventData]) -> Event:
        event = Event(
            session=self.state.session,
            project=self.state.project,
            seq=self.state.seq + 1,
            data=data() if callable(data) else data,
        )
        self.state.apply(event)
        return event

    @staticmethod
    async def _publish_shielded(publication: Awaitable[None]) -> None:
        # Shielded: once applied here, an event must reach the mirror and the clients, or a
        # stop arriving mid-publish would leave them behind this actor. The lock keeps the
        # order of events while one waits for a full mailbox.
        with trio.CancelScope(shield=True):
            await publication

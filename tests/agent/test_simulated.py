"""The simulated provider: determinism, timing, the tool-call flow, directives and resuming."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from contextlib import aclosing
from pathlib import Path

import pytest
import trio

from greenroom.agent.provider import (
    Chunk,
    CompletionRequest,
    Finish,
    Provider,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from greenroom.agent.simulated import MARKDOWN_SAMPLE, SimulatedProvider
from greenroom.agent.tools import TOOLS, run_tool
from greenroom.protocol.chat import Message, ToolCall
from greenroom.protocol.errors import ProviderError

FAST = SimulatedProvider(tokens_per_second=math.inf)


def user(text: str) -> Message:
    return Message(role="user", content=text)


def request(*messages: Message) -> CompletionRequest:
    return CompletionRequest(messages=messages, tools=TOOLS)


async def collect(
    request: CompletionRequest, provider: Provider = FAST, into: list[Chunk] | None = None
) -> list[Chunk]:
    chunks: list[Chunk] = [] if into is None else into
    with trio.fail_after(60):
        async with aclosing(provider.stream(request)) as stream:  # type: ignore[type-var]
            async for chunk in stream:
                chunks.append(chunk)
    return chunks


def text_of(chunks: list[Chunk]) -> str:
    return "".join(chunk.text for chunk in chunks if isinstance(chunk, TextDelta))


def texts(chunks: list[Chunk]) -> list[str]:
    return [chunk.text for chunk in chunks if isinstance(chunk, TextDelta)]


def tool_call_of(chunks: list[Chunk]) -> ToolCall:
    """Assemble the tool call the way a consumer does: by index, pieces concatenated."""
    deltas = [chunk for chunk in chunks if isinstance(chunk, ToolCallDelta)]
    assert {delta.index for delta in deltas} == {0}
    ids = [delta.id for delta in deltas if delta.id is not None]
    names = [delta.name for delta in deltas if delta.name is not None]
    assert len(ids) == len(names) == 1
    return ToolCall(id=ids[0], name=names[0], arguments="".join(d.arguments for d in deltas))


def ending(chunks: list[Chunk]) -> tuple[Usage, Finish]:
    usage, finish = chunks[-2:]
    assert isinstance(usage, Usage)
    assert isinstance(finish, Finish)
    return usage, finish


def after_tool(text: str, call: ToolCall, result: str) -> CompletionRequest:
    """The request of the step after the tool call ran and its result was committed."""
    return request(
        user(text),
        Message(role="assistant", content="", tool_calls=(call,)),
        Message(role="tool", content=result, tool_call_id=call.id),
    )


def stopped(text: str) -> Message:
    return Message(role="assistant", content=text, stopped=True)


# --- basics ----------------------------------------------------------------------------------


def test_name_and_protocol() -> None:
    provider: Provider = SimulatedProvider()
    assert provider.name == "simulated"


@pytest.mark.parametrize(
    "arguments",
    [
        {"tokens_per_second": 0},
        {"tokens_per_second": -1},
        {"tokens_per_second": math.nan},
        {"reply_tokens": -1},
        {"reply_tokens": 10**9},
    ],
)
def test_bad_settings(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SimulatedProvider(**arguments)  # type: ignore[arg-type]


async def test_plain_reply() -> None:
    chunks = await collect(request(user("hello there")))
    tokens = texts(chunks)
    assert len(tokens) == 40
    assert chunks[:40] == [TextDelta(text=token) for token in tokens]
    assert tokens[0][0].isupper()
    assert tokens[-1].endswith(".")
    assert all(token.strip() and not token[0].isspace() for token in tokens)
    assert all(token.endswith(" ") for token in tokens[:-1])
    usage, finish = ending(chunks)
    assert usage.completion_tokens == 40
    assert usage.prompt_tokens == len("hello there") // 4
    assert finish.reason == "stop"
    assert len(chunks) == 42


async def test_reply_tokens_setting() -> None:
    chunks = await collect(
        request(user("hi")), SimulatedProvider(tokens_per_second=math.inf, reply_tokens=7)
    )
    assert len(texts(chunks)) == 7


async def test_max_tokens_cuts_the_reply_with_finish_length() -> None:
    whole = await collect(request(user("hello there")))
    limited = CompletionRequest(messages=(user("hello there"),), tools=TOOLS, max_tokens=5)
    cut = await collect(limited)
    assert texts(cut) == texts(whole)[:5]
    assert ending(cut)[1] == Finish(reason="length")
    # A tool call cut mid-arguments, as a real model's would be.
    command = CompletionRequest(
        messages=(user("create file a.txt with hello"),), tools=TOOLS, max_tokens=5
    )
    chunks = await collect(command)
    assert [type(c).__name__ for c in chunks[:-2]].count("ToolCallDelta") >= 1
    assert ending(chunks)[1] == Finish(reason="length")
    roomy = CompletionRequest(messages=(user("hello there"),), tools=TOOLS, max_tokens=40)
    assert ending(await collect(roomy))[1] == Finish(reason="stop")  # exactly at the limit


async def test_deterministic() -> None:
    conversation = request(Message(role="system", content="be brief"), user("tell me a story"))
    first = await collect(conversation, SimulatedProvider(seed=3, tokens_per_second=math.inf))
    second = await collect(conversation, SimulatedProvider(seed=3, tokens_per_second=math.inf))
    assert first == second
    other_seed = await collect(conversation, SimulatedProvider(seed=4, tokens_per_second=math.inf))
    assert text_of(other_seed) != text_of(first)
    other_text = await collect(request(user("tell me another story")))
    assert text_of(other_text) != text_of(await collect(request(user("tell me a story"))))


def test_deterministic_across_processes() -> None:
    """No salted hash() in the way: another interpreter with another hash seed agrees."""
    script = (
        "import math, trio\n"
        "from greenroom.protocol.chat import Message\n"
        "from greenroom.agent.provider import CompletionRequest\n"
        "from greenroom.agent.simulated import SimulatedProvider\n"
        "async def main():\n"
        "    p = SimulatedProvider(seed=9, tokens_per_second=math.inf)\n"
        "    r = CompletionRequest(messages=(Message(role='user', content='same'),))\n"
        "    print(''.join([c.text async for c in p.stream(r) if hasattr(c, 'text')]))\n"
        "trio.run(main)\n"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed, "PATH": ""},
            cwd=Path(__file__).parents[2],
            timeout=60,
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1
    assert outputs.pop().strip()


async def test_no_user_message() -> None:
    chunks = await collect(CompletionRequest(messages=()))
    assert len(texts(chunks)) == 40
    assert ending(chunks)[1].reason == "stop"


# --- timing ----------------------------------------------------------------------------------


async def test_timing(autojump_clock: trio.testing.MockClock) -> None:
    provider = SimulatedProvider(tokens_per_second=10)
    start = trio.current_time()
    arrivals: list[float] = []
    with trio.fail_after(100):
        async with aclosing(provider.stream(request(user("x [[tokens:20]]")))) as stream:
            async for chunk in stream:
                if isinstance(chunk, TextDelta):
                    arrivals.append(trio.current_time() - start)
    assert len(arrivals) == 20
    assert arrivals[0] == pytest.approx(0.1)
    assert arrivals[-1] == pytest.approx(2.0)
    assert trio.current_time() - start == pytest.approx(2.0)


async def test_rate_directive(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    await collect(request(user("[[rate:100]] x [[tokens:50]]")), SimulatedProvider())
    assert trio.current_time() - start == pytest.approx(0.5)


async def test_tool_call_pieces_are_timed_too(autojump_clock: trio.testing.MockClock) -> None:
    start = trio.current_time()
    chunks = await collect(request(user("delete file a.txt")), SimulatedProvider())
    streamed = [chunk for chunk in chunks if isinstance(chunk, TextDelta | ToolCallDelta)]
    assert trio.current_time() - start == pytest.approx(len(streamed) / 50)
    assert ending(chunks)[0].completion_tokens == len(streamed)


async def test_infinite_rate_takes_no_time_and_stays_cancellable(
    autojump_clock: trio.testing.MockClock,
) -> None:
    start = trio.current_time()
    chunks = await collect(request(user("[[tokens:5000]]")))
    assert len(texts(chunks)) == 5000
    assert trio.current_time() == start
    got: list[Chunk] = []
    with trio.fail_after(10), trio.CancelScope() as scope:
        async with aclosing(FAST.stream(request(user("[[tokens:5000]]")))) as stream:
            async for chunk in stream:
                got.append(chunk)
                if len(got) == 5:
                    scope.cancel()
    assert scope.cancelled_caught
    assert len(got) == 5


# --- the tool-call flow ----------------------------------------------------------------------


async def test_create_file_flow(tmp_path: Path) -> None:
    text = "Create file notes/todo.txt with buy milk\nand bread"
    chunks = await collect(request(user(text)))
    assert text_of(chunks) == "Creating notes/todo.txt."
    deltas = [chunk for chunk in chunks if isinstance(chunk, ToolCallDelta)]
    assert deltas[0].id and deltas[0].name == "write_file"
    assert all(delta.id is None and delta.name is None for delta in deltas[1:])
    assert 2 <= len(deltas) - 1 <= 4
    call = tool_call_of(chunks)
    assert json.loads(call.arguments) == {
        "path": "notes/todo.txt",
        "content": "buy milk\nand bread",
    }
    assert ending(chunks)[1].reason == "tool_calls"
    # Text first, then the call, then usage and finish.
    kinds = [type(chunk).__name__ for chunk in chunks]
    assert kinds == sorted(kinds, key=["TextDelta", "ToolCallDelta", "Usage", "Finish"].index)

    with trio.fail_after(10):
        result = await run_tool(tmp_path, call.name, call.arguments)
    assert (tmp_path / "notes" / "todo.txt").read_text() == "buy milk\nand bread"

    done = await collect(after_tool(text, call, result))
    assert text_of(done) == "Done: wrote notes/todo.txt."
    assert ending(done)[1].reason == "stop"
    assert not any(isinstance(chunk, ToolCallDelta) for chunk in done)


@pytest.mark.parametrize("verb", ["create", "write", "CREATE", "please write"])
async def test_create_variants(verb: str) -> None:
    call = tool_call_of(await collect(request(user(f"{verb} file a.md with # Title"))))
    assert json.loads(call.arguments) == {"path": "a.md", "content": "# Title"}


async def test_tool_call_id_is_stable_and_positional() -> None:
    first = tool_call_of(await collect(request(user("read file a.txt"))))
    again = tool_call_of(await collect(request(user("read file a.txt"))))
    later = tool_call_of(
        await collect(
            request(user("hi"), Message(role="assistant", content="yo"), user("read file a.txt"))
        )
    )
    assert first.id == again.id
    assert later.id != first.id


@pytest.mark.parametrize(
    ("text", "name", "arguments", "intro"),
    [
        ("read file src/a.py", "read_file", {"path": "src/a.py"}, "Reading src/a.py."),
        ("Read the file a.txt.", "read_file", {"path": "a.txt"}, "Reading a.txt."),
        ("list files", "list_files", {}, "Listing the files."),
        ("List files in src?", "list_files", {"path": "src"}, "Listing the files in src."),
        ("delete file old.log", "delete_file", {"path": "old.log"}, "Deleting old.log."),
        (
            "edit file m.py replace return 1 with return 2",
            "edit_file",
            {"path": "m.py", "old": "return 1", "new": "return 2"},
            "Editing m.py.",
        ),
    ],
)
async def test_commands(text: str, name: str, arguments: dict[str, str], intro: str) -> None:
    chunks = await collect(request(user(text)))
    assert text_of(chunks) == intro
    call = tool_call_of(chunks)
    assert call.name == name
    assert json.loads(call.arguments) == arguments
    assert ending(chunks)[1].reason == "tool_calls"


@pytest.mark.parametrize(
    ("text", "result", "reply"),
    [
        ("read file a.txt", "first line\nsecond", "The first line of a.txt is: first line"),
        ("read file e.txt", "", "e.txt is empty."),
        ("list files", "a.txt\nsrc/", "The listing starts with: a.txt"),
        ("delete file a.txt", "deleted a.txt", "Done: deleted a.txt."),
        ("edit file a replace x with y", "edited a: replaced 1 occurrence", "Done: edited a."),
        (
            "read file nope.txt",
            "error: cannot read 'nope.txt': no such file or folder",
            "I could not read nope.txt: cannot read 'nope.txt': no such file or folder",
        ),
        ("create file a with b", "Error: disk full\nmore", "I could not write a: disk full"),
    ],
)
async def test_confirmations(text: str, result: str, reply: str) -> None:
    call = tool_call_of(await collect(request(user(text))))
    chunks = await collect(after_tool(text, call, result))
    assert text_of(chunks) == reply
    assert ending(chunks)[1].reason == "stop"


async def test_tool_flow_with_real_tools(tmp_path: Path) -> None:
    """read, edit and list against real files, each result fed back."""
    (tmp_path / "poem.txt").write_text("roses are red\nviolets are blue\n")
    for text, expected in [
        ("read file poem.txt", "The first line of poem.txt is: roses are red"),
        ("edit file poem.txt replace red with green", "Done: edited poem.txt."),
        ("list files", "The listing starts with: poem.txt"),
        ("read file missing.txt", "I could not read missing.txt: cannot read 'missing.txt'"),
    ]:
        call = tool_call_of(await collect(request(user(text))))
        try:
            with trio.fail_after(10):
                result = await run_tool(tmp_path, call.name, call.arguments)
        except Exception as exc:  # the session commits a ToolError as an "error:" result
            result = f"error: {exc}"
        assert text_of(await collect(after_tool(text, call, result))).startswith(expected)
    assert (tmp_path / "poem.txt").read_text().startswith("roses are green")


async def test_unknown_tool_result_still_ends_the_turn() -> None:
    messages = request(
        user("do it"),
        Message(role="assistant", tool_calls=(ToolCall(id="x", name="shell", arguments="{}"),)),
        Message(role="tool", content="ok", tool_call_id="x"),
    )
    chunks = await collect(messages)
    assert text_of(chunks) == "shell answered: ok"
    assert ending(chunks)[1].reason == "stop"


@pytest.mark.parametrize(
    ("text", "name", "arguments"),
    [
        ("call tool mcp__demo__add with {\"a\": 1}", "mcp__demo__add", '{"a": 1}'),
        ("Please call the tool mcp__demo__ping", "mcp__demo__ping", "{}"),
        (
            "search files for def\\s+main in src",
            "search_files",
            '{"pattern": "def\\\\s+main", "path": "src"}',
        ),
        ("glob **/*.py", "glob", '{"pattern": "**/*.py"}'),
    ],
)
async def test_any_tool_by_name(text: str, name: str, arguments: str) -> None:
    chunks = await collect(request(user(text)))
    calls = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert calls[0].name == name
    assert "".join(c.arguments for c in calls) == arguments
    answered = request(
        user(text),
        Message(role="assistant", tool_calls=(ToolCall(id="x", name=name, arguments="{}"),)),
        Message(role="tool", content="error: no such server\nmore", tool_call_id="x"),
    )
    assert text_of(await collect(answered)) == f"I could not run {name}: no such server"


# --- directives ------------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, 1, 3, 250])
async def test_tokens_directive(count: int) -> None:
    chunks = await collect(request(user(f"write me something [[tokens:{count}]]")))
    assert len(texts(chunks)) == count
    assert ending(chunks)[0].completion_tokens == count


async def test_directives_do_not_change_the_text() -> None:
    plain = text_of(await collect(request(user("a story [[tokens:10]]"))))
    longer = text_of(await collect(request(user("[[TOKENS:20]] a story"))))
    assert longer[: len(plain) - 1] == plain[:-1]  # the same words; only the final period moves


async def test_directives_are_not_echoed() -> None:
    call = tool_call_of(
        await collect(
            request(user("create file a.txt with hello [[rate:1000]] world [[tokens:3]] x"))
        )
    )
    assert json.loads(call.arguments)["content"] == "hello world x"


KINDS = [
    "auth",
    "quota",
    "rate_limit",
    "model_not_found",
    "context_length",
    "server",
    "network",
    "disconnected",
    "timeout",
]


@pytest.mark.parametrize("kind", KINDS)
async def test_fail_directive(kind: str) -> None:
    chunks: list[Chunk] = []
    with pytest.raises(ProviderError) as info:
        await collect(request(user(f"talk [[fail:{kind}]] [[tokens:10]]")), into=chunks)
    assert info.value.kind == kind
    assert info.value.message == f"simulated {kind} failure"
    assert len(chunks) == 5
    assert all(isinstance(chunk, TextDelta) for chunk in chunks)


async def test_fail_directive_on_a_tool_step() -> None:
    chunks: list[Chunk] = []
    with pytest.raises(ProviderError):
        await collect(request(user("create file a with b [[fail:server]]")), into=chunks)
    assert chunks == [TextDelta(text="Creating ")]


@pytest.mark.parametrize("kind", [*KINDS, "bad_response"])
async def test_fail_before_directive(kind: str) -> None:
    chunks: list[Chunk] = []
    with pytest.raises(ProviderError) as info:
        await collect(request(user(f"[[fail-before:{kind}]] hi")), into=chunks)
    assert info.value.kind == kind
    assert chunks == []


async def test_bad_directives_are_ignored() -> None:
    chunks = await collect(request(user("hi [[fail:gremlins]] [[tokens:lots]] [[rate:0]]")))
    assert len(texts(chunks)) == 40
    assert "[[" not in text_of(chunks)


async def test_failures_apply_to_the_first_step_only() -> None:
    text = "read file a.txt [[fail:server]]"
    call = ToolCall(id="c1", name="read_file", arguments='{"path": "a.txt"}')
    chunks = await collect(after_tool(text, call, "hello"))
    assert text_of(chunks) == "The first line of a.txt is: hello"


async def test_stall(autojump_clock: trio.testing.MockClock) -> None:
    chunks: list[Chunk] = []
    start = trio.current_time()
    with trio.move_on_after(30) as scope:
        await collect(request(user("[[stall]] go")), SimulatedProvider(), into=chunks)
    assert scope.cancelled_caught
    assert len(chunks) == 3
    assert trio.current_time() - start == pytest.approx(30)


async def test_aclose_mid_stream() -> None:
    with trio.fail_after(10):
        stream = FAST.stream(request(user("hello")))
        assert isinstance(await stream.__anext__(), TextDelta)
        assert isinstance(await stream.__anext__(), TextDelta)
        await stream.aclose()  # type: ignore[attr-defined]
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()


async def test_aclose_while_stalled(autojump_clock: trio.testing.MockClock) -> None:
    """A consumer that gives up on a stalled stream can close it once its wait is cancelled."""
    with trio.fail_after(100):
        stream = SimulatedProvider().stream(request(user("[[stall]]")))
        for _ in range(3):
            await stream.__anext__()
        with trio.move_on_after(5):
            await stream.__anext__()
        await stream.aclose()  # type: ignore[attr-defined]


# --- resuming --------------------------------------------------------------------------------


async def test_resume_continues_where_it_was_cut() -> None:
    question = user("explain trio")
    full = texts(await collect(request(question)))
    for cut in [1, 7, 39]:
        done = "".join(full[:cut])
        chunks = await collect(request(question, stopped(done)))
        assert texts(chunks) == full[cut:]
        assert ending(chunks)[1].reason == "stop"
        assert ending(chunks)[0].completion_tokens == 40 - cut


async def test_resume_from_nothing_and_from_everything() -> None:
    question = user("explain trio")
    full = texts(await collect(request(question)))
    assert texts(await collect(request(question, stopped("")))) == full
    chunks = await collect(request(question, stopped("".join(full))))
    assert texts(chunks) == []
    assert ending(chunks)[1].reason == "stop"


async def test_resume_inside_a_token() -> None:
    question = user("explain trio")
    full = text_of(await collect(request(question)))
    cut = len(full) // 2 + 1
    rest = text_of(await collect(request(question, stopped(full[:cut]))))
    assert full[:cut] + rest == full


async def test_resume_after_two_cuts() -> None:
    question = user("explain trio")
    full = texts(await collect(request(question)))
    chunks = await collect(
        request(question, stopped("".join(full[:3])), stopped("".join(full[3:10])))
    )
    assert texts(chunks) == full[10:]


async def test_resume_that_does_not_match_starts_over() -> None:
    question = user("explain trio")
    full = texts(await collect(request(question)))
    assert texts(await collect(request(question, stopped("Something else ")))) == full


async def test_resume_a_tool_step() -> None:
    text = "create file a.txt with hi"
    chunks = await collect(request(user(text), stopped("Creat")))
    assert text_of(chunks) == "ing a.txt."
    assert json.loads(tool_call_of(chunks).arguments) == {"path": "a.txt", "content": "hi"}
    assert ending(chunks)[1].reason == "tool_calls"


async def test_resume_the_confirmation() -> None:
    text = "delete file a.txt"
    call = tool_call_of(await collect(request(user(text))))
    base = after_tool(text, call, "deleted a.txt")
    resumed = CompletionRequest(messages=(*base.messages, stopped("Done: ")))
    assert text_of(await collect(resumed)) == "deleted a.txt."


async def test_resume_after_a_failure_completes() -> None:
    question = user("story [[fail:network]] [[tokens:12]]")
    partial: list[Chunk] = []
    with pytest.raises(ProviderError):
        await collect(request(question), into=partial)
    chunks = await collect(request(question, stopped(text_of(partial))))
    assert len(texts(partial)) + len(texts(chunks)) == 12
    assert ending(chunks)[1].reason == "stop"


async def test_resume_before_the_failure_point_fails_again() -> None:
    question = user("story [[fail:network]] [[tokens:12]]")
    full = texts(await collect(request(user("story [[tokens:12]]"))))
    chunks: list[Chunk] = []
    with pytest.raises(ProviderError):
        await collect(request(question, stopped(full[0])), into=chunks)
    assert texts(chunks) == full[1:6]


async def test_resume_after_fail_before_and_stall(autojump_clock: trio.testing.MockClock) -> None:
    chunks = await collect(request(user("[[fail-before:auth]] hi [[tokens:4]]"), stopped("")))
    assert len(texts(chunks)) == 4
    question = user("[[stall]] hi [[tokens:6]]")
    partial: list[Chunk] = []
    with trio.move_on_after(10):
        await collect(request(question), SimulatedProvider(), into=partial)
    resumed = await collect(request(question, stopped(text_of(partial))), SimulatedProvider())
    assert len(texts(partial)) == 3
    assert len(texts(resumed)) == 3


async def test_edit_splits_at_the_first_with() -> None:
    text = "edit file a.txt replace x  with y with z"
    arguments = json.loads(tool_call_of(await collect(request(user(text)))).arguments)
    assert arguments == {"path": "a.txt", "old": "x ", "new": "y with z"}


@pytest.mark.parametrize(
    "text",
    [
        "edit file a replace x" + " " * 200_000 + "y",
        "[[" + " " * 200_000 + "x",
        "hi" + " " * 200_000 + "[[tokens:" + " " * 200_000,
        "read file " + "a" * 200_000 + "!",
        "create file a with " + " \n" * 100_000,
    ],
)
async def test_long_messages_are_parsed_in_linear_time(text: str) -> None:
    """Parsing runs in the event loop: a backtracking regex would freeze every session."""
    chunks = await collect(request(user(text)))
    assert isinstance(chunks[-1], Finish)


async def test_stamp_marks_each_token_with_the_monotonic_time_it_was_emitted() -> None:
    import time

    before = time.monotonic()
    chunks = await collect(request(user("hello [[stamp]] [[tokens:5]] [[rate:inf]]")))
    after = time.monotonic()
    words = "".join(texts(chunks)).split()
    assert len(words) == 5
    stamps = [float(word.rpartition("@")[2].rstrip(".")) for word in words]
    assert before <= stamps[0] <= stamps[-1] <= after
    assert stamps == sorted(stamps)
    plain = await collect(request(user("hello [[tokens:5]] [[rate:inf]]")))
    assert [w.partition("@")[0] for w in words] == "".join(texts(plain)).split()


async def test_echo_replies_with_the_message_as_written() -> None:
    """``[[echo]]`` lets a test make the model say anything, even what looks like a command."""
    said = "# Title\n\n<script>alert(1)</script>\n\ncreate file a.txt with b"
    chunks = await collect(request(user(f"[[echo]] {said} [[tokens:3]]")))
    assert text_of(chunks) == said
    assert not [chunk for chunk in chunks if isinstance(chunk, ToolCallDelta)]
    assert ending(chunks)[1].reason == "stop"


async def test_markdown_replies_with_the_sample(autojump_clock: trio.testing.MockClock) -> None:
    chunks = await collect(request(user("show me [[markdown]] [[rate:10]]")), SimulatedProvider())
    assert text_of(chunks) == MARKDOWN_SAMPLE
    assert len(texts(chunks)) > 20  # streamed token by token, like any reply
    assert "```python\n" in MARKDOWN_SAMPLE and "| file | change |" in MARKDOWN_SAMPLE


async def test_an_echo_cut_short_resumes_where_it_was() -> None:
    said = "[[echo]] one two three four"
    chunks = await collect(request(user(said), stopped("one tw")))
    assert text_of(chunks) == "o three four"

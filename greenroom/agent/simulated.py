"""The ``simulated`` provider: offline, deterministic replies streamed at a set token rate.

It is what ``greenroom serve`` uses with no configuration, what the tests use, and what drives
the load benchmarks, so a reply is planned once (a list of tokens) and streamed with no
per-token work beyond a sleep and a yield. Everything depends only on the seed and the request.

The reply answers the last user message; what follows that message decides the step:

- Nothing after it: the first step. A command at the start of the message (case-insensitive,
  an optional "please" before it) makes a short text ("Creating notes.txt.") and one tool call,
  finish reason ``tool_calls``:

  ``create file X with Y`` / ``write file X with Y`` -> ``write_file(path=X, content=Y)``
  (Y is the rest of the message, as written); ``read file X`` -> ``read_file``; ``list files``
  or ``list files in X`` -> ``list_files``; ``delete file X`` -> ``delete_file``; ``edit file X
  replace A with B`` -> ``edit_file(path=X, old=A, new=B)`` (A ends at the first " with ").
  A trailing ``.``/``!``/``?`` after X is not part of the path for read, list and delete.
  Anything else: ``reply_tokens`` tokens of English-looking pseudo-text drawn from
  ``random.Random(f"{seed}:{text}")`` (``text`` without its directives; not ``hash()``,
  which is salted per process), ending with a period; finish reason ``stop``.
- A tool result after it: the second step, a short confirmation ("Done: wrote notes.txt.", the
  first line of a file read, ...) and finish reason ``stop``. A result that starts with
  ``error:`` (case-insensitive) is reported as a failure. One tool call per turn, always.

The tool call's id is derived from the seed, the message and its position, so it is stable;
its arguments are JSON, streamed as a first :class:`ToolCallDelta` with the id and the name and
then two to four pieces of the arguments. Tools are called whatever ``request.tools`` says.

Timing: the k-th streamed chunk (a text token or a tool-call piece, counted from 1) is due
k/rate seconds of trio time after the stream started, so N tokens take N/rate seconds (the first
comes after 1/rate: a time to first token), or up to a tick of the shared pacer later
(:mod:`greenroom.agent.pacing`). A consumer that falls behind gets the chunks already
due without more sleeping, as from a real server's buffered response; that also keeps the rate
when thousands of streams load the process. ``rate = math.inf`` means no sleeping; the stream
still checkpoints once per chunk, so it stays cancellable and fair. Rates must be > 0.

A request's ``max_tokens`` caps the chunks one call streams, as a model's length limit would:
a longer reply is cut there (a tool call too, mid-arguments) and finishes with ``length``.
Failures and stalls are not cut.

The end of a step is ``Usage`` then ``Finish``, always in that order; ``prompt_tokens`` is the
conversation's characters / 4, ``completion_tokens`` the number of chunks streamed by this call.

Directives, anywhere in the last user message, removed from the text before anything else
(so they are never echoed and do not change the pseudo-text):

- ``[[tokens:N]]``: a pseudo-text reply of N tokens (0 to 100000); ignored by commands.
- ``[[rate:R]]``: R tokens per second for this reply (``inf`` for no sleeping).
- ``[[fail:KIND]]``: stream half of the first step's text (``len // 2`` tokens), then raise
  ``ProviderError(KIND, "simulated KIND failure")``.
- ``[[fail-before:KIND]]``: raise before any token of the first step.
- ``[[stall]]``: stream at most three tokens of the first step, then sleep until cancelled.
- ``[[echo]]``: the reply is the message's own text (without its directives), as written, so a
  test can make the "model" say anything: Markdown, HTML, a script. No tool call.
- ``[[markdown]]``: the reply is a fixed Markdown sample (:data:`MARKDOWN_SAMPLE`: a heading, a
  list, a link, a table, a Python code block) for the web UI's rendering. No tool call.
- ``[[stamp]]``: each text token is streamed as ``word@T `` where T is ``time.monotonic()``
  when it was emitted (for the benchmarks' latency figures; a stamped reply is not resumed
  exactly, since the stamps differ).

KIND is one of auth, quota, rate_limit, model_not_found, context_length, server, network,
disconnected, timeout, bad_response; a directive with a bad value is removed and otherwise
ignored. Failures and stalls apply to the first step only, so the second step of a tool turn
always completes.

Resuming: when the conversation ends with assistant messages marked ``stopped`` whose contents,
joined, are a prefix of the reply the provider gives to the conversation before them, only the
rest of that reply is streamed (from the middle of a token if the cut was there), then the tool
call if the reply has one. A resumed step does not repeat a failure or stall that the stream had
already reached, so a failed or stalled step that is resumed completes; ``fail-before`` does not
fire on a resume. A stopped message that is not such a prefix gets the whole reply again.

(Just over 500 lines: the directives above, which tests and benchmarks rely on, and their
planner belong together.)
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
import time
from collections.abc import AsyncGenerator, Sequence

import attrs
import trio

from greenroom.agent.pacing import current_pacer
from greenroom.agent.provider import (
    Chunk,
    CompletionRequest,
    Finish,
    TextDelta,
    ToolCallDelta,
    Usage,
)
from greenroom.protocol.chat import Message, ToolCall
from greenroom.protocol.errors import ProviderError

FAILURE_KINDS = frozenset(
    {
        "auth",
        "quota",
        "rate_limit",
        "model_not_found",
        "context_length",
        "server",
        "network",
        "disconnected",
        "timeout",
        "bad_response",
    }
)
MAX_REPLY_TOKENS = 100_000
STALL_AFTER_TOKENS = 3
_QUOTED_CHARS = 200
# The reply to ``[[markdown]]``: one of each thing the web UI renders.
MARKDOWN_SAMPLE = """\
## A plan for the footer

Three steps, **in order**:

1. Add a `footer` element to the *base* template.
2. Style it (see [the guide](https://example.org/footer)).
3. Check it at phone width.

| file | change |
|---|---|
| `base.html` | a new footer |
| `site.css` | its style |

```python
def footer(year: int) -> str:
    \"\"\"The footer's text.\"\"\"
    return f"<footer>(c) {year}</footer>"
```

> Nothing else changes.
"""

# Linear on any input: the lookbehind starts a match only where a whitespace run starts, and
# the possessive quantifiers (`*+`) never give back what they took, so nothing backtracks.
_DIRECTIVE = re.compile(
    r"(?<!\s)\s*+\[\[\s*+(?:(?P<key>tokens|rate|fail-before|fail)\s*+:\s*+"
    r"(?P<value>[^\[\]\s]*+)\s*+|(?P<flag>stall|stamp|echo|markdown)\s*+)\]\]",
    re.IGNORECASE,
)
_TOKEN = re.compile(r"\S+\s*|\s+")
_PLEASE = r"(?:please\s+)?"
_CREATE = re.compile(
    _PLEASE + r"(?:create|write)\s+(?:a\s+|the\s+)?file\s+(?P<path>\S+)\s+with\s+(?P<content>.*)",
    re.IGNORECASE | re.DOTALL,
)
_READ = re.compile(_PLEASE + r"read\s+(?:the\s+)?file\s+(?P<path>\S+?)[.!?]?", re.IGNORECASE)
_DELETE = re.compile(_PLEASE + r"delete\s+(?:the\s+)?file\s+(?P<path>\S+?)[.!?]?", re.IGNORECASE)
_LIST = re.compile(
    _PLEASE + r"list\s+(?:all\s+)?(?:the\s+)?files(?:\s+in\s+(?P<path>\S+?))?[.!?]?",
    re.IGNORECASE,
)
_EDIT = re.compile(
    _PLEASE + r"edit\s+(?:the\s+)?file\s+(?P<path>\S+)\s+replace\s+(?P<rest>.*)",
    re.IGNORECASE | re.DOTALL,
)
_SEARCH = re.compile(
    _PLEASE
    + r"search\s+(?:the\s+)?files\s+for\s+(?P<pattern>\S+?)"
    + r"(?:\s+in\s+(?P<path>\S+?))?[.!?]?",
    re.IGNORECASE,
)
_GLOB = re.compile(_PLEASE + r"glob\s+(?P<pattern>\S+)", re.IGNORECASE)
_CALL = re.compile(
    _PLEASE + r"call\s+(?:the\s+)?tool\s+(?P<name>[A-Za-z0-9_.-]+)(?:\s+with\s+(?P<arguments>.*))?",
    re.IGNORECASE | re.DOTALL,
)
_WITH = " with "

# Common English words and a few of the stage: replies read like text, cheaply.
_WORD_TEXT = """
the a of and to in is it that was for on are with as be at this have from or by one had not
but what all were when we there can an your which their said if do will each about how up
out them then she many some so these would other into has more her two like him see time
could no make than first been its who now people my made over did down only way find use may
water long little very after words called just where most know garden river light stone
quiet morning window paper story music bridge simple careful green room actor stage
"""
_WORDS = tuple(_WORD_TEXT.split())
_VERBS = {
    "write_file": "write",
    "read_file": "read",
    "list_files": "list",
    "delete_file": "delete",
    "edit_file": "edit",
}
"""The file tools the confirmations name by a verb; any other tool is named as it is."""


@attrs.frozen(kw_only=True)
class _Directives:
    tokens: int | None = None
    rate: float | None = None
    fail: str | None = None
    fail_before: str | None = None
    stall: bool = False
    stamp: bool = False
    echo: bool = False
    markdown: bool = False


@attrs.frozen(kw_only=True)
class _Step:
    """The whole reply to a conversation, before any resuming."""

    tokens: tuple[str, ...]
    tool_call: ToolCall | None
    finish: str
    rate: float
    fail: str | None = None
    fail_before: str | None = None
    stall: bool = False
    stamp: bool = False


def _parse_directives(text: str) -> tuple[_Directives, str]:
    """The directives in ``text``, and ``text`` without them (stripped); the last one wins."""
    if "[[" not in text:
        return _Directives(), text.strip()
    directives = _Directives()
    for match in _DIRECTIVE.finditer(text):
        if match["flag"]:
            flag = match["flag"].lower()
            directives = attrs.evolve(
                directives,
                stall=directives.stall or flag == "stall",
                stamp=directives.stamp or flag == "stamp",
                echo=directives.echo or flag == "echo",
                markdown=directives.markdown or flag == "markdown",
            )
            continue
        key, value = match["key"].lower(), match["value"].strip()
        if key == "tokens":
            if value.isdigit() and int(value) <= MAX_REPLY_TOKENS:
                directives = attrs.evolve(directives, tokens=int(value))
        elif key == "rate":
            try:
                rate = float(value)
            except ValueError:
                continue
            if rate > 0:  # NaN compares false, so it is refused here too
                directives = attrs.evolve(directives, rate=rate)
        elif value.lower() in FAILURE_KINDS:
            if key == "fail":
                directives = attrs.evolve(directives, fail=value.lower())
            else:
                directives = attrs.evolve(directives, fail_before=value.lower())
    return directives, _DIRECTIVE.sub("", text).strip()


def _stamped(delta: TextDelta) -> TextDelta:
    """The token with the moment it is emitted: ``word@<time.monotonic()>`` and its space.
    CLOCK_MONOTONIC is one clock for every process on the machine, so a client in another
    process can compute the token's latency from it."""
    word = delta.text.rstrip()
    return TextDelta(text=f"{word}@{time.monotonic():.6f}{delta.text[len(word):]}")


def _tokenize(text: str) -> tuple[str, ...]:
    """Split ``text`` into tokens (a word and the space after it) that join back to ``text``."""
    return tuple(_TOKEN.findall(text))


def _pseudo_tokens(seed: int, text: str, count: int) -> tuple[str, ...]:
    """``count`` tokens of sentences of random words, the same for the same seed and text."""
    rng = random.Random(f"{seed}:{text}")
    words = rng.choices(_WORDS, k=count)
    tokens: list[str] = []
    left = rng.randint(6, 14)
    capital = True
    last = count - 1
    for index, word in enumerate(words):
        if capital:
            word = word.capitalize()
            capital = False
        left -= 1
        if index == last:
            tokens.append(word + ".")
        elif left == 0:
            tokens.append(word + ". ")
            capital = True
            left = rng.randint(6, 14)
        else:
            tokens.append(word + " ")
    return tuple(tokens)


def _first_line(text: str) -> str:
    line = text.split("\n", 1)[0].strip()
    if len(line) > _QUOTED_CHARS:
        line = line[:_QUOTED_CHARS] + "..."
    return line


def _command(text: str) -> tuple[str, str, dict[str, str] | str] | None:
    """The tool call the message asks for: (intro text, tool name, arguments), or None.
    ``call tool`` passes its arguments on as the JSON text it was given."""
    if match := _CREATE.fullmatch(text):
        path = match["path"]
        return f"Creating {path}.", "write_file", {"path": path, "content": match["content"]}
    if (match := _EDIT.fullmatch(text)) and (cut := match["rest"].lower().find(_WITH)) > 0:
        # str.find, not a regex: a lazy `.+?\s+with` is quadratic on long runs of spaces.
        path, rest = match["path"], match["rest"]
        arguments = {"path": path, "old": rest[:cut], "new": rest[cut + len(_WITH) :]}
        return f"Editing {path}.", "edit_file", arguments
    if match := _READ.fullmatch(text):
        path = match["path"]
        return f"Reading {path}.", "read_file", {"path": path}
    if match := _DELETE.fullmatch(text):
        path = match["path"]
        return f"Deleting {path}.", "delete_file", {"path": path}
    if match := _LIST.fullmatch(text):
        if match["path"] is None:
            return "Listing the files.", "list_files", {}
        path = match["path"]
        return f"Listing the files in {path}.", "list_files", {"path": path}
    if match := _SEARCH.fullmatch(text):
        arguments = {"pattern": match["pattern"]}
        if match["path"] is not None:
            arguments["path"] = match["path"]
        return f"Searching for {match['pattern']}.", "search_files", arguments
    if match := _GLOB.fullmatch(text):
        return f"Looking for {match['pattern']}.", "glob", {"pattern": match["pattern"]}
    if match := _CALL.fullmatch(text):
        return f"Calling {match['name']}.", match["name"], match["arguments"] or "{}"
    return None


def _confirmation(call: ToolCall | None, result: str) -> str:
    """The second step's text: what the tool call did, or that it failed."""
    if call is None:
        return "Done."
    try:
        arguments = json.loads(call.arguments)
    except ValueError:
        arguments = None
    path = arguments.get("path") if isinstance(arguments, dict) else None
    target = path if isinstance(path, str) else "the project"
    verb = _VERBS.get(call.name)
    if verb is None:
        if result[:6].lower() == "error:":
            return f"I could not run {call.name}: {_first_line(result[6:])}"
        return f"{call.name} answered: {_first_line(result)}"
    if result[:6].lower() == "error:":
        reason = _first_line(result[6:])
        return f"I could not {verb or 'run ' + call.name} {target}: {reason}"
    first = _first_line(result)
    if call.name == "write_file":
        return f"Done: wrote {target}."
    if call.name == "read_file":
        return f"The first line of {target} is: {first}" if first else f"{target} is empty."
    if call.name == "list_files":
        return f"The listing starts with: {first}" if first else "There are no files."
    if call.name == "delete_file":
        return f"Done: deleted {target}."
    if call.name == "edit_file":
        return f"Done: edited {target}."
    return "Done."


def _split(text: str, pieces: int) -> list[str]:
    size = len(text)
    bounds = [size * index // pieces for index in range(pieces + 1)]
    return [text[start:end] for start, end in itertools.pairwise(bounds)]


class SimulatedProvider:
    """An offline provider with deterministic replies; see the module docstring for the rules.

    ``tokens_per_second`` may be ``math.inf`` (no sleeping); it must be > 0.
    """

    def __init__(
        self, *, seed: int = 0, tokens_per_second: float = 50.0, reply_tokens: int = 40
    ) -> None:
        if not tokens_per_second > 0:
            raise ValueError("tokens_per_second must be > 0 (math.inf for no sleeping)")
        if not 0 <= reply_tokens <= MAX_REPLY_TOKENS:
            raise ValueError(f"reply_tokens must be from 0 to {MAX_REPLY_TOKENS}")
        self._seed = seed
        self._rate = float(tokens_per_second)
        self._reply_tokens = reply_tokens

    @property
    def name(self) -> str:
        """Always ``simulated``, so that no one takes its replies for a model's."""
        return "simulated"

    def _step(self, messages: Sequence[Message]) -> _Step:
        """Plan the whole reply to ``messages`` (which do not end with stopped messages)."""
        last_user = next(
            (index for index in range(len(messages) - 1, -1, -1) if messages[index].role == "user"),
            -1,
        )
        raw = (messages[last_user].content or "") if last_user >= 0 else ""
        directives, text = _parse_directives(raw)
        rate = directives.rate if directives.rate is not None else self._rate
        tail = messages[last_user + 1 :]
        result = next((m for m in reversed(tail) if m.role == "tool"), None)
        if result is not None:
            calls = (call for m in tail if m.tool_calls for call in m.tool_calls)
            call = next((c for c in calls if c.id == result.tool_call_id), None)
            confirmation = _confirmation(call, result.content or "")
            return _Step(tokens=_tokenize(confirmation), tool_call=None, finish="stop", rate=rate)
        command = None if directives.echo or directives.markdown else _command(text)
        tool_call: ToolCall | None = None
        if directives.echo:
            tokens = _tokenize(text)
        elif directives.markdown:
            tokens = _tokenize(MARKDOWN_SAMPLE)
        elif command is None:
            count = self._reply_tokens if directives.tokens is None else directives.tokens
            tokens = _pseudo_tokens(self._seed, text, count)
        else:
            intro, name, arguments = command
            tokens = _tokenize(intro)
            bits = random.Random(f"{self._seed}:{last_user}:{text}:call").getrandbits(64)
            tool_call = ToolCall(
                id=f"call_sim_{bits:016x}",
                name=name,
                # The model writes JSON text for a call's arguments; so does this one.
                arguments=(
                    arguments
                    if isinstance(arguments, str)
                    else json.dumps(arguments, ensure_ascii=False)
                ),
            )
        return _Step(
            tokens=tokens,
            tool_call=tool_call,
            finish="stop" if tool_call is None else "tool_calls",
            rate=rate,
            fail=directives.fail,
            fail_before=directives.fail_before,
            stall=directives.stall,
            stamp=directives.stamp,
        )

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        """Stream one step's chunks; raise ProviderError where a directive says so."""
        messages = request.messages
        end = len(messages)
        while end > 0 and messages[end - 1].role == "assistant" and messages[end - 1].stopped:
            end -= 1
        step = self._step(messages[:end])
        tokens = step.tokens
        pieces: Sequence[str] = tokens
        start = 0
        resuming = False
        if end < len(messages):
            done = "".join(m.content or "" for m in messages[end:])
            full = "".join(tokens)
            if full.startswith(done):
                resuming = True
                position = 0
                while start < len(tokens) and position + len(tokens[start]) <= len(done):
                    position += len(tokens[start])
                    start += 1
                if position < len(done):  # the cut was inside token `start`
                    pieces = [full[len(done) : position + len(tokens[start])], *tokens[start + 1 :]]
                else:
                    pieces = tokens[start:]
        stop_at = len(tokens)
        failure: str | None = None
        stall = False
        if step.stall and (not resuming or start < min(STALL_AFTER_TOKENS, len(tokens))):
            stop_at, stall = min(STALL_AFTER_TOKENS, len(tokens)), True
        if step.fail and (not resuming or start < len(tokens) // 2) and len(tokens) // 2 < stop_at:
            stop_at, stall, failure = len(tokens) // 2, False, step.fail
        if step.fail_before and not resuming:
            stop_at, stall, failure = 0, False, step.fail_before

        chunks: list[Chunk] = [TextDelta(text=piece) for piece in pieces[: max(stop_at - start, 0)]]
        if step.tool_call is not None and not stall and failure is None:
            call = step.tool_call
            chunks.append(ToolCallDelta(index=0, id=call.id, name=call.name))
            parts = _split(call.arguments, min(2 + len(call.arguments) % 3, len(call.arguments)))
            chunks.extend(ToolCallDelta(index=0, arguments=part) for part in parts)

        finish = step.finish
        limit = request.max_tokens
        if limit is not None and len(chunks) > limit and failure is None and not stall:
            chunks, finish = chunks[:limit], "length"

        delay = 0.0 if math.isinf(step.rate) else 1.0 / step.rate
        started = trio.current_time()
        pacer = current_pacer()
        await trio.lowlevel.checkpoint()
        for number, chunk in enumerate(chunks, 1):
            # Paced against a schedule, not by a sleep per chunk: a consumer that fell behind
            # gets the chunks that are due at once, and an overloaded process keeps the rate.
            await pacer.sleep_until(started + number * delay)
            if step.stamp and isinstance(chunk, TextDelta):
                chunk = _stamped(chunk)
            yield chunk
        if stall:
            await trio.sleep_forever()
        if failure is not None:
            raise ProviderError(failure, f"simulated {failure} failure")
        prompt_chars = len(request.system_prompt or "") + sum(
            len(m.content or "") + sum(len(c.arguments) for c in m.tool_calls or ())
            for m in messages
        )
        yield Usage(prompt_tokens=prompt_chars // 4, completion_tokens=len(chunks))
        yield Finish(reason=finish)

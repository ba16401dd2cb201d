"""What every streamed HTTP provider shares: the request, retries, errors and the connection.

A provider here is a *dialect* (the request body, the headers, a sans-IO :class:`EventMapper`
that turns server-sent events into greenroom's chunks, and the error classification) on top of
:class:`StreamingProvider`, which owns the HTTP side: one ``POST`` per step with a streamed
reply, retries, timeouts, and closing the connection promptly when the turn is stopped.

Retries: 429, 5xx, an overloaded server and network failures are retried with jittered
exponential backoff (honouring ``Retry-After``), but only while nothing has been yielded: after
the first chunk the session has shown text, and a retry would show it twice.

Network failures are told apart: a server that cannot be reached at all is ``network``; a
connection that breaks after the request went out (mid-reply, or before the first byte of the
reply) is ``disconnected``. Both name the provider's base URL, without any credentials in it.

The API key is sent in one header and appears nowhere else: not in reprs, logs or error
messages (a server that echoes it has it replaced by ``***``).

HTTP is httpx2, the maintained successor of httpx (the same API under a new name, on anyio,
so it runs on trio); the OpenAI and Anthropic SDKs moved to it too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from typing import Any, ClassVar, Final, Protocol

import httpx2
import trio

from greenroom.agent.provider import Chunk, CompletionRequest
from greenroom.agent.sse import ServerSentEvent, SSEDecoder, SSEError
from greenroom.protocol.errors import InvalidArgument, ProviderError
from greenroom.supervisor.backoff import Backoff

logger = logging.getLogger("greenroom.agent")

RETRYABLE: Final = frozenset({"rate_limit", "server", "network", "disconnected"})
CLOSE_TIMEOUT: Final = 2.0
"""Seconds that closing a response may take: it runs shielded, so it must be bounded."""
DRAIN_TIMEOUT: Final = 0.5
"""Seconds to read what follows the end of the stream (the end of the body) to keep the
connection."""
MAX_ERROR_BODY: Final = 64 * 1024
QUOTED_CHARS: Final = 300


def quote(text: str, secret: str | None) -> str:
    """A server's message as shown to users: one line, truncated, never the key."""
    text = " ".join(text.split())
    if secret:
        text = text.replace(secret, "***")
    return text if len(text) <= QUOTED_CHARS else text[: QUOTED_CHARS - 3] + "..."


def event_json(event: ServerSentEvent, secret: str | None) -> object:
    """The JSON value an event carries, or a ``bad_response``."""
    try:
        return json.loads(event.data)
    except (ValueError, RecursionError):  # not JSON, or nested past what Python parses
        quoted = quote(event.data, secret)
        raise ProviderError(
            "bad_response", f"the model server sent a chunk that is not JSON: {quoted}"
        ) from None


def public_url(base_url: str) -> str:
    """``base_url`` as errors name it: no user, password or query (which may hold a key)."""
    url = httpx2.URL(base_url)
    host = f"[{url.host}]" if ":" in url.host else url.host  # an IPv6 address
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{host}{port}{url.path}".rstrip("/")


def _error_fields(body: object) -> tuple[str, str]:
    """(message, code and type, lowercased) of an error body, in OpenAI's, Anthropic's or
    Ollama's shape."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, str):
        return error, ""
    if not isinstance(error, dict):
        return "", ""
    message = error.get("message")
    tags = " ".join(str(error.get(key) or "") for key in ("code", "type")).lower()
    return (message if isinstance(message, str) else ""), tags


def classify_error(
    status: int | None,
    body: object,
    *,
    model: str,
    secret: str | None = None,
    key_hint: str = "GREENROOM_API_KEY / api_key",
) -> ProviderError:
    """The ProviderError for an HTTP error status (or, with ``status`` None, an error event
    sent in the stream) and its parsed JSON body (or its text). ``key_hint`` says where the
    key comes from, for an ``auth`` error."""
    message, tags = _error_fields(body)
    if status is None and isinstance(body, dict) and isinstance(body.get("error"), dict):
        # OpenRouter's in-stream errors carry the upstream HTTP status as a numeric code.
        code_value = body["error"].get("code")
        if isinstance(code_value, int) and 400 <= code_value <= 599:
            status = code_value
    if not message and isinstance(body, str):
        message = body
    said = f" (the server said: {quote(message, secret)})" if message.strip() else ""
    lowered = message.lower()
    code = f"HTTP {status}" if status is not None else "an error in the stream"
    if (
        status == 402
        or "insufficient_quota" in tags
        or "insufficient_quota" in lowered
        or "credit balance" in lowered  # Anthropic's 400 for an account out of credits
    ):
        return ProviderError("quota", f"the account is out of quota or credits{said}")
    if (
        "context_length" in tags
        or "context length" in lowered
        or "context window" in lowered
        or "prompt is too long" in lowered  # Anthropic's words
    ):
        return ProviderError(
            "context_length",
            f"the conversation is too long for model {model!r}: start a new chat{said}",
        )
    if status == 404 or "model_not_found" in tags:
        return ProviderError(
            "model_not_found",
            f"model {model!r} was not found: check the model name and base_url{said}",
        )
    if status in (401, 403) or "authentication_error" in tags or "permission_error" in tags:
        return ProviderError("auth", f"the API key was refused: check {key_hint}{said}")
    if status == 429 or "rate_limit" in tags:
        return ProviderError("rate_limit", f"rate limited ({code}): try again later{said}")
    if status == 529 or "overloaded" in tags:
        return ProviderError("server", f"the model server is overloaded ({code}){said}")
    if status is None or status >= 500:
        return ProviderError("server", f"the model server failed ({code}){said}")
    return ProviderError("bad_request", f"the model server refused the request ({code}){said}")


def _retry_after(headers: httpx2.Headers) -> float | None:
    """Seconds the server asks to wait (``retry-after-ms`` or ``Retry-After`` in seconds)."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue  # an HTTP date: rare from model servers; the backoff is used instead
        if value >= 0:
            return value
    return None


class EventMapper(Protocol):
    """A dialect's sans-IO reader: server-sent events in, greenroom chunks out.

    ``done`` turns true at the dialect's end-of-stream event; ``end`` then checks the stream
    whole and gives the chunks held back (usage, then finish), or raises ``bad_response``.
    """

    @property
    def done(self) -> bool: ...

    def feed_event(self, event: ServerSentEvent) -> list[Chunk]: ...

    def end(self) -> list[Chunk]: ...


@asynccontextmanager
async def _map_exceptions(where: str) -> AsyncIterator[None]:
    """httpx2's exceptions, turned into ProviderError once, at the I/O boundary.

    A server that cannot be reached (``network``) is told apart from a connection that broke
    once the request was out (``disconnected``): the first is a wrong URL or a server that is
    down, the second a server that died or a proxy that cut the reply.
    """
    try:
        yield
    except httpx2.ConnectTimeout:
        raise ProviderError(
            "timeout", f"the model server at {where} did not accept the connection in time"
        ) from None
    except httpx2.TimeoutException as error:
        what = f"the model server at {where} did not answer in time ({type(error).__name__})"
        raise ProviderError("timeout", what) from None
    except httpx2.ConnectError as error:
        what = f"cannot reach the model server at {where} ({type(error).__name__})"
        raise ProviderError("network", what) from None
    except httpx2.HTTPError as error:
        what = type(error).__name__
        raise ProviderError(
            "disconnected",
            f"the connection to the model server at {where} broke before the reply was "
            f"complete ({what})",
        ) from None


class StreamingProvider:
    """A model server that streams its replies as server-sent events over HTTP.

    Subclasses give the dialect: :attr:`PATH`, :meth:`_body`, :meth:`_mapper`, the default key
    header, and :attr:`KEY_HINT`. ``client`` is used as given (its owner closes it); without one
    the provider makes its own on first use, closed by :meth:`aclose`. ``sleep`` is how backoff
    waits (injectable for tests); ``rng`` draws the jitter.

    ``extra_headers`` are sent with every request (after the provider's own, so they may
    replace them), ``extra_body`` is merged into every body (top-level keys replace the
    provider's), ``query`` parameters are added to the URL (Azure's ``api-version``) and
    ``api_key_header`` names the header that carries the key instead of the dialect's own
    (Azure's ``api-key``); ``Authorization`` sends it as a bearer token.
    """

    PATH: ClassVar[str]
    KEY_HEADER: ClassVar[str]
    KEY_HINT: ClassVar[str]

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str | None,
        model: str,
        client: httpx2.AsyncClient | None = None,
        max_retries: int = 3,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
        rng: random.Random | None = None,
        backoff: Backoff = Backoff(initial=0.5, maximum=8.0),  # noqa: B008 (frozen, shared)
        max_retry_after: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = trio.sleep,
        extra_headers: Mapping[str, str] | None = None,
        extra_body: Mapping[str, Any] | None = None,
        query: Mapping[str, str] | None = None,
        api_key_header: str | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InvalidArgument(f"bad base_url {base_url!r}: give an http:// or https:// URL")
        if not model:
            raise InvalidArgument(f"the {self.name} provider needs a model: set model or --model")
        try:
            url = httpx2.URL(base_url)
        except httpx2.InvalidURL as error:
            raise InvalidArgument(f"bad base_url: {error}") from None
        self._url = url.copy_with(path=url.path.rstrip("/") + self.PATH, query=None)
        # Parameters written into base_url are kept; the ``query`` setting adds to them.
        self._params = {**dict(url.params), **dict(query or {})}
        self._where = public_url(base_url)
        self._api_key = api_key or None
        self._key_header = api_key_header or self.KEY_HEADER
        self._extra_headers = dict(extra_headers or {})
        self._extra_body = dict(extra_body or {})
        self._model = model
        self._client = client
        self._owns_client = client is None
        self._max_retries = max_retries
        self._timeout = httpx2.Timeout(
            connect=connect_timeout, read=read_timeout, write=connect_timeout, pool=connect_timeout
        )
        self._rng = rng or random.Random()
        self._backoff = backoff
        self._max_retry_after = max_retry_after
        self._sleep = sleep

    @property
    def name(self) -> str:
        raise NotImplementedError

    @property
    def model(self) -> str:
        return self._model

    def __repr__(self) -> str:
        key = "set" if self._api_key else "none"
        return f"{type(self).__name__}(base_url={self._where!r}, model={self._model!r}, key={key})"

    # -- the dialect --------------------------------------------------------------------------

    def _body(self, request: CompletionRequest, model: str) -> dict[str, Any]:
        raise NotImplementedError

    def _mapper(self, model: str) -> EventMapper:
        raise NotImplementedError

    def _dialect_headers(self) -> dict[str, str]:
        return {}

    # -- HTTP ---------------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the HTTP client the provider made (not one it was given)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await client.aclose()

    def _http(self) -> httpx2.AsyncClient:
        if self._client is None:
            # No connection cap: every running turn holds one streaming response, and
            # greenroom.config's max_concurrent_turns is what bounds them.
            limits = httpx2.Limits(max_connections=None, max_keepalive_connections=32)
            self._client = httpx2.AsyncClient(limits=limits, timeout=self._timeout)
        return self._client

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", **self._dialect_headers()}
        if self._api_key:
            bearer = self._key_header.lower() == "authorization"
            headers[self._key_header] = f"Bearer {self._api_key}" if bearer else self._api_key
        headers.update(self._extra_headers)
        return headers

    def request_body(self, request: CompletionRequest) -> dict[str, Any]:
        """The JSON body of one streamed request, ``extra_body`` merged in."""
        body = self._body(request, request.model or self._model)
        body.update(self._extra_body)
        return body

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[Chunk, None]:
        """Stream one step; retry before the first chunk; raise ProviderError on failure."""
        model = request.model or self._model
        body = self.request_body(request)
        yielded = False
        attempt = 0
        while True:
            try:
                async with _map_exceptions(self._where), self._response(body, model) as response:
                    mapper = self._mapper(model)
                    async with aclosing(self._chunks(response, mapper)) as chunks:
                        async for chunk in chunks:
                            yielded = True
                            yield chunk
                return
            except ProviderError as failure:
                attempt += 1
                if yielded or failure.kind not in RETRYABLE or attempt > self._max_retries:
                    raise
                delay = self._backoff.delay(attempt, self._rng)
                if failure.retry_after is not None:
                    delay = min(failure.retry_after, self._max_retry_after)
                logger.warning(
                    "%s: %s; retry %d of %d in %.2fs",
                    failure.kind, failure.message, attempt, self._max_retries, delay,
                )  # fmt: skip
            await self._sleep(delay)

    @asynccontextmanager
    async def _response(self, body: dict[str, Any], model: str) -> AsyncIterator[httpx2.Response]:
        """A streaming response with a 2xx status; an error status raises ProviderError."""
        client = self._http()
        http_request = client.build_request(
            "POST",
            self._url,
            params=self._params,
            json=body,
            headers=self._headers(),
            timeout=self._timeout,
        )
        response = await client.send(http_request, stream=True)
        try:
            if response.status_code >= 300:
                raise await self._error(response, model)
            yield response
        finally:
            # Shielded so that a stop (the turn's scope cancelled) still closes the connection
            # at once, and bounded because the shield would otherwise hold the stop up.
            with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await response.aclose()

    async def _error(self, response: httpx2.Response, model: str) -> ProviderError:
        raw = bytearray()
        body_bytes = response.aiter_bytes()
        try:
            with trio.move_on_after(self._timeout.read or CLOSE_TIMEOUT):
                async for piece in body_bytes:
                    raw += piece
                    if len(raw) >= MAX_ERROR_BODY:
                        break
        finally:
            await _close(response, body_bytes)
        text = raw[:MAX_ERROR_BODY].decode("utf-8", errors="replace")
        try:
            body: object = json.loads(text)
        except (ValueError, RecursionError):
            body = text
        error = classify_error(
            response.status_code, body, model=model, secret=self._api_key, key_hint=self.KEY_HINT
        )
        retry_after = _retry_after(response.headers)
        if retry_after is not None:
            error.retry_after = retry_after
        return error

    async def _chunks(
        self, response: httpx2.Response, mapper: EventMapper
    ) -> AsyncGenerator[Chunk, None]:
        decoder = SSEDecoder()
        body = response.aiter_bytes()
        try:
            async for data in body:
                try:
                    events = decoder.feed(data)
                except SSEError as error:
                    raise ProviderError("bad_response", str(error)) from None
                for event in events:
                    for chunk in mapper.feed_event(event):
                        yield chunk
                    if mapper.done:
                        break
                if mapper.done:
                    break
        finally:
            await _close(response, body, drain=mapper.done)
        for chunk in mapper.end():  # also when a server closes the stream without its end
            yield chunk


async def _close(
    response: httpx2.Response, body: AsyncIterator[bytes], *, drain: bool = False
) -> None:
    """Close ``response`` and run its body iterator to the end, shielded and bounded.

    ``drain``: read the rest of the body first (after the end event it is only the end of the
    chunked body), which lets the connection go back to the pool. Otherwise closing the
    response closes the connection, at once. The iterator is then run to its end either way:
    httpx2's body iterators are async generators nested five deep, and one abandoned mid-way
    is finalized later by trio with a ResourceWarning; run on, they end with an error.
    """
    if drain:
        with trio.move_on_after(DRAIN_TIMEOUT, shield=True), contextlib.suppress(Exception):
            async for _ in body:
                pass
    with trio.move_on_after(CLOSE_TIMEOUT, shield=True):
        await response.aclose()
        with contextlib.suppress(Exception):
            async for _ in body:
                pass

"""Fixtures for the browser tests: the real ``greenroom serve`` and Debian's Chromium.

Playwright's sync API in plain (non-trio) test functions. Chromium is the system one
(``apt-get install chromium``; .ci/run installs it): Playwright's own browser download is not
available here. A missing Chromium fails the tests with a message, never skips them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import trio

from greenroom.transport.client import connect
from tests.debian import install_from_debian
from tests.e2e.harness import REPO, log_tail

CHROMIUM = Path(os.environ.get("GREENROOM_CHROMIUM", "/usr/bin/chromium"))
# Without the background-networking flags, Chromium's own calls home are refused by a closed
# network, and it spends its time on them.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "tests" / "web" / "artifacts"
RESUMED = "resumed after an interruption"  # the marker under a reply resumed after a cut
WAIT_MS = 30_000
"""The bound on a page's waits (an action, an ``expect``): far above what a loaded machine
needs, so never the cause of a failure."""
T = TypeVar("T")


@attrs.define(eq=False)
class Served:
    """A running ``greenroom serve`` (restartable on the same port and folders)."""

    folder: Path
    process: subprocess.Popen[bytes] | None = None
    ws_url: str = ""
    token: str = ""
    port: int = 0

    @property
    def page_url(self) -> str:
        """The UI, logged in: what a user opens from ``greenroom serve``'s output."""
        return f"http://127.0.0.1:{self.port}/?token={self.token}"

    def start(self) -> None:
        with (self.folder / "serve.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "greenroom", "serve", "--port", str(self.port),
                 "--data-dir", str(self.folder / "data"),
                 "--config-dir", str(self.folder / "config")],
                stdout=subprocess.PIPE, stderr=log, cwd=REPO,
            )  # fmt: skip
        first = _first_line(self.process)
        prefix = "greenroom serving at "
        assert first.startswith(prefix), first
        self.ws_url, _, self.token = first.removeprefix(prefix).partition("?token=")
        self.port = int(self.ws_url.rpartition(":")[2].removesuffix("/ws"))

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=10)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self.process = None

    def run(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(client)`` with greenroom's Python client, in a thread of its own (the
        test's thread belongs to Playwright's event loop)."""

        async def main() -> T:
            with trio.fail_after(20):
                async with connect(self.ws_url, self.token, reconnect=False) as client:
                    return await fn(client)

        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(trio.run, main).result(timeout=30)

    def committed(self, project: str) -> list[dict[str, Any]]:
        """The project's committed messages, as the protocol gives them."""

        async def messages(client: Any) -> list[dict[str, Any]]:
            state = (await client.open_session(project))["session"]
            return list(state["messages"])

        return self.run(messages)

    def log_tail(self, lines: int = 40) -> str:
        """The end of the server's log (every start appends to it): for a failure's message."""
        return log_tail(self.folder / "serve.log", lines)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    running = Served(folder=tmp_path)
    try:
        running.start()
        yield running
    finally:
        running.stop(signal.SIGKILL)


def _first_line(process: subprocess.Popen[bytes]) -> str:
    lines: queue.Queue[bytes] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=15)
    except queue.Empty:
        raise AssertionError("greenroom serve printed nothing within 15 s") from None
    if not line:
        raise AssertionError(f"greenroom serve exited early (code {process.poll()})")
    return line.decode().strip()


def install_chromium() -> None:
    install_from_debian(CHROMIUM, "chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    install_chromium()
    if not CHROMIUM.exists():
        pytest.fail(
            f"the browser tests need Chromium at {CHROMIUM}: run `apt-get install chromium` "
            "(or set GREENROOM_CHROMIUM to its path); .ci/run installs it",
            pytrace=False,
        )
    from playwright.sync_api import expect, sync_playwright

    # Every expect() waits as long as every other wait here (Playwright's own default is 5 s,
    # too short for a busy machine: a server restarted, a page reconnecting after backoff).
    expect.set_options(timeout=WAIT_MS)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@contextlib.contextmanager
def open_page(browser: Any, **context: Any) -> Iterator[Any]:
    """A page in a context of its own (``viewport``, ``color_scheme``, ...), that fails the test
    if the page logged an error."""
    context.setdefault("viewport", {"width": 1200, "height": 760})
    opened_context = browser.new_context(**context)
    opened_context.set_default_timeout(WAIT_MS)  # every wait is bounded
    opened = opened_context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda exc: errors.append(str(exc)))

    def console(message: Any) -> None:
        # A failed websocket attempt while the server is away is expected (the page retries
        # and says so); anything else logged as an error is a bug (a CSP refusal included).
        if message.type == "error" and "WebSocket connection to" not in message.text:
            errors.append(message.text)

    opened.on("console", console)
    try:
        yield opened
    finally:
        opened_context.close()
    assert not errors, f"the page logged errors: {errors}"


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    with open_page(browser) as opened:
        yield opened


class Shots:
    """Screenshots of each step, saved under tests/web/artifacts/<test>/ (git-ignored)."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.folder = ARTIFACTS / name
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in self.folder.glob("*.png"):
            old.unlink()
        self.count = 0

    def __call__(self, step: str) -> None:
        self.count += 1
        self.page.screenshot(path=str(self.folder / f"{self.count:02d}-{step}.png"))


@pytest.fixture
def shots(page: Any, request: pytest.FixtureRequest) -> Shots:
    taken = Shots(page, request.node.name)
    print(f"screenshots: {taken.folder}")
    return taken


# -- steps shared by the browser tests


def create_project(page: Any, name: str) -> None:
    from playwright.sync_api import expect

    page.fill("#new-project-name", name)
    page.click("#new-project button[type=submit]")
    expect(page.locator("#chat-title")).to_have_text(name)
    expect(page.locator("#input")).to_be_enabled()


def send(page: Any, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def project(page: Any, name: str) -> Any:
    return page.locator(f"#projects li[data-project='{name}']")


def shown_texts(page: Any) -> list[str]:
    """The text of each message bubble shown, trimmed (Markdown adds line ends)."""
    texts = page.locator("#messages .msg:not([hidden]) > .text").all_text_contents()
    return [" ".join(str(text).split()) for text in texts]


def expected_texts(messages: list[dict[str, Any]]) -> list[str]:
    """The bubbles' texts the page should show for committed ``messages``: a stopped assistant
    text that another assistant text follows was resumed, and the two read as one reply."""
    texts: list[str] = []
    joinable = False
    for message in messages:
        if message["role"] == "tool":
            joinable = False
            continue
        content = message.get("content") or ""
        if message["role"] == "assistant" and joinable:
            texts[-1] += content
        else:
            texts.append(content)
        joinable = (
            message["role"] == "assistant"
            and bool(message.get("stopped"))
            and not message.get("tool_calls")
        )
    return [" ".join(text.split()) for text in texts]


def wait_until(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll ``check`` (a file on disk, a process) until it holds; a generous cap, not a bound."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.05)


def replies_in_history(served: Served, project: str) -> int:
    """How many assistant messages the project's history files hold (written by the server)."""
    count = 0
    for path in served.folder.glob(f"data/**/{project}/.ai/history/*.jsonl"):
        count += sum('"assistant"' in line for line in path.read_text().splitlines())
    return count

"""A kill -9 of ``greenroom serve`` mid-stream, and a restart on the same data folder and port:
the page that stayed open ends up showing exactly what a fresh load of the page shows."""

from __future__ import annotations

import re
import signal
from typing import Any

from playwright.sync_api import Page, expect

from tests.web.conftest import (
    RESUMED,
    Served,
    Shots,
    create_project,
    expected_texts,
    open_page,
    project,
    send,
    shown_texts,
)


def what_is_shown(page: Page) -> dict[str, Any]:
    return {
        "messages": page.locator("#messages").inner_html(),
        "texts": shown_texts(page),
        "projects": page.locator("#projects").inner_html(),
        "total": page.locator("#status-total").text_content(),
        "running": page.locator("#status-running").is_visible(),
        "name": page.locator("#chat-name").text_content(),
        "title": page.title(),
    }


def test_after_kill_9_and_restart_the_open_page_shows_what_a_fresh_load_shows(
    page: Page, browser: Any, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "kill")
    send(page, "[[tokens:240]] [[rate:40]] through a kill")
    streaming = page.locator("#streaming .text")
    expect(streaming).to_have_text(re.compile(r"(\S+ ){8}"))
    seen = str(streaming.text_content()).strip()
    served.stop(signal.SIGKILL)
    expect(page.locator("#conn")).to_contain_text("reconnecting")
    shots("killed")
    served.start()  # same data folder, same port: the page reconnects by itself
    expect(page.locator("#conn")).to_be_hidden()
    # While the rest streams, what the page shows is always the start of the one reply: never
    # the kept part and the stream run together, never a second bubble.
    samples = []
    while page.locator("#stop").is_enabled() and len(samples) < 50:
        samples.append(" ".join(shown_texts(page)[1:]))
        page.wait_for_timeout(100)
    expect(project(page, "kill").locator(".dot.idle")).to_be_visible()
    shots("after-restart")

    messages = served.committed("kill")
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant"]
    assert messages[1]["stopped"] is True  # cut by the kill, then resumed by itself
    reply = messages[1]["content"] + messages[2]["content"]
    whole = " ".join(reply.split())
    assert whole.startswith(" ".join(seen.split()))  # nothing seen was lost
    for sample in samples:
        assert whole.startswith(sample), sample
    # One reply, with the quiet marker; no "(cut short)" bubble and no second one.
    assistant = page.locator("#messages .msg.assistant:not([hidden])")
    expect(assistant).to_have_count(1)
    expect(assistant.locator(".marker.resumed")).to_have_text(RESUMED)
    expect(assistant.locator(".cut")).to_have_count(0)
    assert shown_texts(page) == expected_texts(messages)

    with open_page(browser) as fresh:
        fresh.goto(f"{served.page_url}#kill")
        expect(fresh.locator("#messages .msg.assistant")).to_have_count(1)
        expect(fresh.locator("#chat-name")).not_to_be_empty()
        shots.page = fresh
        shots("fresh-load")
        assert what_is_shown(fresh) == what_is_shown(page)


def test_what_is_done_while_the_server_is_away_happens_once_it_is_back(
    page: Page, served: Served
) -> None:
    page.goto(served.page_url)
    create_project(page, "before")
    served.stop()
    expect(page.locator("#conn")).to_contain_text("reconnecting")
    # Made while disconnected: the call waits for the next welcome instead of failing.
    page.fill("#new-project-name", "while-away")
    page.click("#new-project button[type=submit]")
    served.start()
    expect(page.locator("#chat-title")).to_have_text("while-away")
    expect(page.locator(".toast")).to_have_count(0)  # no "not connected" error
    assert "while-away" in [p.name for p in (served.folder / "data" / "projects").iterdir()]

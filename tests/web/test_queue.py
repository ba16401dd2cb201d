"""Cancelling one queued message with its cross button, in a real browser against a real
``greenroom serve``."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.web.conftest import Served, Shots, create_project, send


def test_the_cross_cancels_one_queued_message_and_a_conflict_says_so(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "cancel")
    send(page, "[[stall]] the first")
    expect(page.locator("#streaming .text")).not_to_be_empty()
    for text in ("the second", "the third", "the fourth"):
        send(page, text)
    items = page.locator("#queue-items .queued-text")
    expect(items).to_have_text(["the second", "the third", "the fourth"])
    cross = page.get_by_role("button", name="Cancel queued message")
    expect(cross).to_have_count(3)

    cross.nth(1).click()
    expect(items).to_have_text(["the second", "the fourth"])
    expect(page.locator("#queued")).to_have_text("2 queued")
    shots("queue-cancel")

    async def queued(client: Any) -> list[str]:
        return list((await client.open_session("cancel"))["session"]["queued"])

    assert served.run(queued) == ["the second", "the fourth"]

    # The page's view of the queue is stale (as when a turn took the text meanwhile): the
    # server refuses, the page says so, and the queue stays as it is.
    page.locator("#queue-items li").nth(0).evaluate("li => { li.preview = 'moved on'; }")
    cross.nth(0).click()
    expect(page.locator(".toast", has_text="not cancelled")).to_be_visible()
    expect(items).to_have_text(["the second", "the fourth"])
    assert served.run(queued) == ["the second", "the fourth"]

    # The page draws the queue again as the last summary has it: the next click works.
    cross.nth(0).click()
    expect(items).to_have_text(["the fourth"])
    cross.nth(0).click()
    expect(page.locator("#queue")).to_be_hidden()
    assert served.run(queued) == []

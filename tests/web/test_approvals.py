"""Tool approvals in the page: allow and deny buttons on the pending call, the indicator's
count of sessions waiting, and toasts for other projects, in a real browser against a real
``greenroom serve``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.web.conftest import Served, Shots, create_project, project, send, wait_until


def project_file(served: Served, name: str, file: str) -> Path:
    path = served.folder / "data" / "projects" / name / file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("precious")
    return path


def tool_results(served: Served, name: str) -> list[str]:
    return [m["content"] for m in served.committed(name) if m["role"] == "tool"]


def test_allow_and_deny_buttons_on_the_pending_call(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "tidy")
    first, second = project_file(served, "tidy", "a.txt"), project_file(served, "tidy", "b.txt")
    send(page, "delete file a.txt")
    bar = page.locator("#messages .approval")
    expect(bar).to_be_visible()
    expect(bar).to_contain_text("waits for your approval")
    # The bar sits with the call it is about.
    expect(page.locator("#messages .tool-call .tool-name")).to_have_text("→ delete_file")
    expect(page.locator("#status-approval")).to_have_text("1")
    expect(project(page, "tidy").locator(".ind.asking")).to_be_visible()
    assert "waiting for approval" in (page.locator("#status").get_attribute("title") or "")
    shots("asking")
    assert first.exists()

    bar.locator("button.allow").click()
    expect(bar).to_have_count(0)
    expect(page.locator("#status-approval")).to_be_hidden()
    expect(page.locator("#messages .tool-result .tool-summary")).to_have_text("deleted a.txt")
    wait_until(lambda: not first.exists(), "a.txt is deleted")

    send(page, "delete file b.txt")
    expect(bar).to_be_visible()
    bar.locator(".approval-reason").fill("b is the backup")
    bar.locator("button.deny").click()
    expect(bar).to_have_count(0)
    denial = "error: not run: the user denied this call: b is the backup"
    expect(page.locator("#messages .tool-result .tool-summary").nth(1)).to_have_text(denial)
    expect(project(page, "tidy").locator(".dot.idle")).to_be_visible()
    shots("denied")
    assert second.exists()
    assert tool_results(served, "tidy") == ["deleted a.txt", denial]


def ask_in_background(served: Served, name: str) -> None:
    """Another client has ``name``'s model ask to delete a file (the page views another)."""
    project_file(served, name, "x.txt")

    async def ask(client: Any) -> None:
        session = (await client.open_session(name))["session"]["session"]
        await client.send_message(session, "delete file x.txt")

    served.run(ask)


def test_the_indicator_counts_waiting_sessions_and_other_projects_toast(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "here")
    project_file(served, "here", "x.txt")
    send(page, "delete file x.txt")
    expect(page.locator("#messages .approval")).to_be_visible()
    ask_in_background(served, "there")
    ask_in_background(served, "yonder")
    expect(page.locator("#status-approval")).to_have_text("3")
    toasts = page.locator(".toast.approval")
    expect(toasts).to_have_count(2)  # none for the project being viewed
    expect(toasts.locator("strong")).to_have_text(
        ["there waits for approval", "yonder waits for approval"]
    )
    expect(toasts.first.locator(".body")).to_contain_text("delete_file")
    page.click("#status")
    expect(page.locator("#sessions-panel tr", has_text="there")).to_contain_text(
        "delete_file waits for approval"
    )
    page.keyboard.press("Escape")
    shots("three-waiting")

    toasts.first.locator("button.view").click()
    expect(page.locator("#chat-title")).to_have_text("there")
    page.locator("#messages .approval button.allow").click()
    expect(page.locator("#status-approval")).to_have_text("2")
    wait_until(lambda: tool_results(served, "there") == ["deleted x.txt"], "there's call ran")

    # A page opened later shows what waits: the badge, and the buttons in the chat.
    page.goto(f"{served.page_url}#yonder")
    expect(page.locator("#chat-title")).to_have_text("yonder")
    expect(page.locator("#status-approval")).to_have_text("2")
    page.locator("#messages .approval button.deny").click()
    expect(page.locator("#status-approval")).to_have_text("1")

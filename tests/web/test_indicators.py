"""The sessions indicator in the sidebar head, its popover, the project indicators and the
toasts, in a real browser against a real ``greenroom serve``."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from tests.web.conftest import (
    Served,
    Shots,
    create_project,
    project,
    replies_in_history,
    send,
    wait_until,
)

LONG = "[[tokens:2000]] [[rate:40]]"  # runs until stopped, as far as a test is concerned
DEFAULT_LINK_BLUE = "rgb(0, 0, 238)"


def test_the_popover_goes_to_a_project_ticks_stops_deletes_and_closes(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "alpha")
    send(page, f"{LONG} a long story")
    expect(page.locator("#streaming .text")).not_to_be_empty()
    create_project(page, "beta")
    # The indicator: the total, the blue count of running sessions, a spinner.
    expect(page.locator("#status-total")).to_have_text("2")
    expect(page.locator("#status-running")).to_have_text("1")
    expect(page.locator("#status-running")).to_have_css("background-color", "rgb(31, 111, 235)")
    expect(page.locator("#status-spinner")).to_be_visible()
    # Project indicators: a spinner you can see (14 px, blue), a green dot when idle.
    spinner = project(page, "alpha").locator(".spinner")
    expect(spinner).to_have_css("width", "14px")
    expect(spinner).to_have_css("border-top-color", "rgb(31, 111, 235)")
    expect(project(page, "beta").locator(".dot.idle")).to_have_css(
        "background-color", "rgb(45, 164, 78)"
    )

    page.click("#status")
    panel = page.locator("#sessions-panel")
    expect(panel).to_be_visible()
    alpha = panel.locator("tr", has_text="alpha")
    beta = panel.locator("tr", has_text="beta")
    expect(alpha.locator(".when")).to_have_text("now")  # streaming: active now
    expect(alpha.locator(".preview")).not_to_be_empty()
    expect(alpha.locator(".msgs")).to_have_text("1")
    # An idle session's last activity ticks while the popover is open.
    expect(beta.locator(".when")).to_have_text(re.compile(r"^\d+s ago$"))
    before = str(beta.locator(".when").text_content())
    expect(beta.locator(".when")).not_to_have_text(before)
    width = panel.bounding_box()["width"]
    shots("popover")
    # Links look like the UI's, not the browser's default blue.
    link = alpha.locator("button.link")
    expect(link).to_have_css("color", "rgb(47, 111, 79)")
    assert link.evaluate("node => getComputedStyle(node).color") != DEFAULT_LINK_BLUE
    page.wait_for_timeout(1_200)  # a few more ticks of summaries and times
    assert panel.bounding_box()["width"] == width  # its width never jumps

    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    expect(page.locator("#status")).to_be_focused()
    expect(page.locator("#status")).to_have_attribute("aria-expanded", "false")
    page.click("#status")
    expect(panel).to_be_visible()
    page.click("#chat-title")  # a click outside
    expect(panel).to_be_hidden()

    page.click("#status")
    link.click()  # goes there, and the popover closes
    expect(page.locator("#chat-title")).to_have_text("alpha")
    expect(panel).to_be_hidden()

    page.click("#status")
    alpha.locator("button.stop").click()
    expect(project(page, "alpha").locator(".dot.idle")).to_be_visible()
    expect(page.locator("#status-running")).to_be_hidden()
    expect(page.locator("#status-spinner")).to_be_hidden()
    expect(page.locator(".toast")).to_have_count(0)  # alpha is the project being viewed

    # Delete asks first, and says what it removes.
    beta.locator("button.delete").click()
    dialog = page.locator("#confirm")
    expect(dialog).to_be_visible()
    expect(dialog.locator("h2")).to_have_text("Delete the session of beta?")
    expect(dialog).to_contain_text("history file stays in the project folder")
    shots("confirm-delete")
    page.click("#confirm-cancel")
    expect(dialog).to_be_hidden()
    expect(beta).to_have_count(1)
    expect(page.locator("#status-total")).to_have_text("2")
    beta.locator("button.delete").click()
    page.click("#confirm-delete")
    expect(beta).to_have_count(0)
    expect(page.locator("#status-total")).to_have_text("1")
    # Nothing next to a project without a session.
    expect(project(page, "beta").locator(".ind")).to_have_attribute("class", "ind")
    assert served.run(lambda client: client.list_sessions())["sessions"][0]["project"] == "alpha"
    shots("deleted")


def test_toasts_say_how_a_turn_ended_and_only_where_the_user_is_not_looking(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "fails")
    send(page, "[[tokens:40]] [[rate:40]] [[fail:server]] go")
    create_project(page, "stops")
    send(page, "[[stall]] go")
    create_project(page, "here")
    send(page, "[[rate:inf]] hello")

    failed = page.locator(".toast.failed")
    expect(failed.locator("strong")).to_have_text("fails failed")
    expect(failed.locator(".body")).to_contain_text("the provider had a server error")
    expect(project(page, "fails").locator(".dot.bad")).to_be_visible()
    expect(project(page, "here").locator(".dot.idle")).to_be_visible()

    page.click("#status")
    page.locator("#sessions-panel tr", has_text="stops").locator("button.stop").click()
    stopped = page.locator(".toast.stopped")
    expect(stopped.locator("strong")).to_have_text("stops stopped")
    page.keyboard.press("Escape")
    shots("toasts")
    # The turn that ended in the project being viewed made no toast.
    expect(page.locator(".toast")).to_have_count(2)

    failed.locator("button.view").click()
    expect(page.locator("#chat-title")).to_have_text("fails")
    expect(failed).to_have_count(0)
    expect(page.locator("#error-text")).to_contain_text("server error")
    stopped.locator("button.close").click()
    expect(page.locator(".toast")).to_have_count(0)


def test_turns_that_ended_while_the_page_was_closed_show_as_toasts(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "away")
    send(page, "[[tokens:150]] [[rate:15]] in the background")  # ten seconds: past the page
    create_project(page, "home")
    send(page, "[[tokens:30]] [[rate:15]] while you look")
    expect(page.locator("#streaming .text")).not_to_be_empty()
    page.goto("about:blank")  # the page goes away before either turn ends
    wait_until(
        lambda: replies_in_history(served, "away") and replies_in_history(served, "home"),
        "both turns end",
    )

    page.goto(f"{served.page_url}#home")
    expect(page.locator("#chat-title")).to_have_text("home")
    toast = page.locator(".toast")
    expect(toast).to_have_count(1)  # "home" is the one being viewed: no toast for it
    expect(toast.locator("strong")).to_have_text("away finished")
    shots("kept-toast")
    toast.locator("button.view").click()
    expect(page.locator("#chat-title")).to_have_text("away")
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)

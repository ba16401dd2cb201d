"""The page at phone and desk widths, with the keyboard, in the dark scheme: a real browser
against a real ``greenroom serve``."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from tests.web.conftest import Served, Shots, create_project, open_page, project, send


def no_sideways_scroll(page: Page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= page.viewport_size["width"], width


def inside_the_window(page: Page, selector: str) -> None:
    box = page.locator(selector).bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= page.viewport_size["width"], box


def test_at_390_px_the_sidebar_is_a_drawer_behind_a_button(browser: Any, served: Served) -> None:
    with open_page(browser, viewport={"width": 390, "height": 800}) as page:
        shots = Shots(page, "phone")
        page.goto(served.page_url)
        expect(page.locator("#menu")).to_be_visible()
        expect(page.locator("#sidebar")).to_be_hidden()
        page.click("#menu")
        expect(page.locator("#sidebar")).to_be_visible()
        expect(page.locator("#menu")).to_have_attribute("aria-expanded", "true")
        create_project(page, "pocket")  # choosing a project closes the drawer
        expect(page.locator("#sidebar")).to_be_hidden()
        send(page, "[[tokens:2000]] [[rate:40]] on the go")
        expect(page.locator("#streaming .text")).not_to_be_empty()
        # The running count shows on the menu button while the drawer is closed.
        expect(page.locator("#menu-running")).to_have_text("1")
        expect(page.locator("#menu-spinner")).to_be_visible()
        no_sideways_scroll(page)
        inside_the_window(page, "#send")
        shots("phone-chat")

        page.click("#menu")
        expect(project(page, "pocket").locator(".spinner")).to_be_visible()
        page.click("#status")
        expect(page.locator("#sessions-panel")).to_be_visible()
        inside_the_window(page, "#sessions-panel")
        expect(page.locator("#sessions-panel button.stop")).to_be_visible()
        shots("phone-popover")
        page.keyboard.press("Escape")  # the popover first,
        expect(page.locator("#sessions-panel")).to_be_hidden()
        expect(page.locator("#sidebar")).to_be_visible()
        page.keyboard.press("Escape")  # then the drawer,
        expect(page.locator("#sidebar")).to_be_hidden()
        expect(page.locator("#stop")).to_be_enabled()
        page.keyboard.press("Escape")  # then the turn
        expect(page.locator("#stop")).to_be_disabled()
        expect(page.locator("#menu-spinner")).to_be_hidden()
        no_sideways_scroll(page)
        page.click("#menu")
        expect(page.locator("#sidebar")).to_be_visible()
        page.mouse.click(370, 400)  # beside the drawer
        expect(page.locator("#sidebar")).to_be_hidden()
        page.click("#menu")  # the button stays in view above the drawer: it closes it too
        expect(page.locator("#sidebar")).to_be_visible()
        page.click("#menu")
        expect(page.locator("#sidebar")).to_be_hidden()


def test_at_1440_px_everything_is_in_view(browser: Any, served: Served) -> None:
    with open_page(browser, viewport={"width": 1440, "height": 900}) as page:
        page.goto(served.page_url)
        expect(page.locator("#menu")).to_be_hidden()
        expect(page.locator("#sidebar")).to_be_visible()
        create_project(page, "desk")
        send(page, "[[rate:inf]] [[tokens:8]] hello")
        expect(project(page, "desk").locator(".dot.idle")).to_be_visible()
        chat = page.locator("#chat").bounding_box()
        assert chat is not None and chat["width"] > 1100
        page.click("#status")
        inside_the_window(page, "#sessions-panel")
        # Anchored under the indicator, in the sidebar's corner.
        panel = page.locator("#sessions-panel").bounding_box()
        status = page.locator("#status").bounding_box()
        assert panel is not None and status is not None
        assert panel["y"] >= status["y"] + status["height"]
        no_sideways_scroll(page)


def test_the_keyboard_alone_works_and_focus_shows(page: Page, served: Served) -> None:
    page.goto(served.page_url)
    create_project(page, "keys")
    page.locator("#input").focus()
    page.keyboard.type("[[rate:inf]] [[tokens:4]] typed")
    page.keyboard.press("Shift+Enter")  # a new line, not a send
    page.keyboard.type("and a second line")
    expect(page.locator("#input")).to_have_value(
        "[[rate:inf]] [[tokens:4]] typed\nand a second line"
    )
    page.keyboard.press("Enter")  # sends
    expect(page.locator("#input")).to_have_value("")
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)
    # Tab from the message box reaches the send button, with a visible focus ring.
    page.keyboard.press("Tab")
    expect(page.locator("#send")).to_be_focused()
    expect(page.locator("#send")).to_have_css("outline-style", "solid")
    expect(page.locator("#send")).to_have_css("outline-width", "2px")
    page.locator("#status").focus()
    page.keyboard.press("Enter")  # opens the popover
    expect(page.locator("#sessions-panel")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#sessions-panel")).to_be_hidden()
    expect(page.locator("#status")).to_be_focused()


def test_a_dark_system_gets_a_dark_page(browser: Any, served: Served) -> None:
    with open_page(browser, color_scheme="dark") as page:
        shots = Shots(page, "dark")
        page.goto(served.page_url)
        create_project(page, "night")
        send(page, "[[markdown]] [[rate:inf]] at night")
        expect(page.locator("#messages .md h2")).to_be_visible()
        expect(page.locator("html")).to_have_css("background-color", "rgb(21, 24, 28)")
        expect(page.locator("#messages .msg.assistant")).to_have_css(
            "background-color", "rgb(29, 33, 38)"
        )
        expect(page.locator("#chat-title")).to_have_css("color", "rgb(230, 232, 235)")
        shots("dark")
    with open_page(browser, color_scheme="light") as page:
        page.goto(served.page_url)
        expect(page.locator("html")).to_have_css("background-color", "rgb(247, 247, 245)")

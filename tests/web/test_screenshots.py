"""The pictures of docs/web-ui.md, taken from the real UI against a real ``greenroom serve``.

Every run checks what each picture shows. The pictures go to tests/web/artifacts/docs/; with
``GREENROOM_DOC_SCREENSHOTS=1`` they replace the ones in docs/images/:

    GREENROOM_DOC_SCREENSHOTS=1 .venv/bin/python -m pytest tests/web/test_screenshots.py
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, expect

from tests.e2e.harness import REPO
from tests.web.conftest import ARTIFACTS, Served, create_project, project, send

LONG = "[[tokens:2000]] [[rate:15]]"


def folder() -> Path:
    if os.environ.get("GREENROOM_DOC_SCREENSHOTS") == "1":
        return REPO / "docs" / "images"
    return ARTIFACTS / "docs"


def test_the_pictures_of_the_guide(page: Page, served: Served) -> None:
    out = folder()
    out.mkdir(parents=True, exist_ok=True)

    def shoot(name: str, target: Any = None) -> None:
        (target or page).screenshot(path=str(out / f"web-ui-{name}.png"))

    page.goto(served.page_url)
    create_project(page, "blog")
    send(page, "[[markdown]] [[rate:inf]] plan the footer")
    reply = page.locator("#messages .msg.assistant:not(.streaming)")
    expect(reply.locator("pre code .hljs-keyword").first).to_have_text("def")
    for name, message in [
        ("shop", f"{LONG} rework the checkout"),
        ("docs", f"{LONG} write the install guide"),
        ("api", "[[tokens:100]] [[rate:12]] check the api"),  # still running when counted
    ]:
        create_project(page, name)
        send(page, message)
        expect(page.locator("#streaming .text")).not_to_be_empty()
    project(page, "blog").locator("button").click()
    expect(page.locator("#chat-title")).to_have_text("blog")
    expect(page.locator("#status-total")).to_have_text("4")
    expect(page.locator("#status-running")).to_have_text("3")
    shoot("sessions")
    shoot("markdown", reply)

    page.click("#status")
    shop = page.locator("#sessions-panel tr", has_text="shop")
    expect(shop.locator(".preview")).not_to_be_empty()
    shoot("popover")
    page.keyboard.press("Escape")

    toast = page.locator(".toast", has_text="api finished")
    expect(toast).to_be_visible()
    expect(page.locator("#status-running")).to_have_text("2")
    shoot("toast")

    page.set_viewport_size({"width": 390, "height": 760})
    toast.locator("button.close").click()
    page.click("#menu")
    project(page, "shop").locator("button").click()
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator("#streaming .text")).not_to_be_empty()
    expect(page.locator("#menu-running")).to_have_text("2")
    shoot("phone")
    page.click("#menu")
    expect(page.locator("#sidebar")).to_be_visible()
    page.wait_for_function(
        "() => document.getElementById('sidebar').getBoundingClientRect().left === 0"
    )
    shoot("phone-drawer")
    names = ["markdown", "phone", "phone-drawer", "popover", "sessions", "toast"]
    assert {path.name for path in out.glob("web-ui-*.png")} == {f"web-ui-{n}.png" for n in names}

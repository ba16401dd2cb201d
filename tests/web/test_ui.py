"""The web UI in a real browser (Debian's Chromium), against a real ``greenroom serve``.

Each step is checked on the page and saved as a screenshot (tests/web/artifacts/<test>/).
Shown text is compared with what the protocol says was committed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from typing import Any

from playwright.sync_api import Page, expect

from tests.agent.test_mcp import SERVER
from tests.web.conftest import (
    RESUMED,
    Served,
    Shots,
    create_project,
    expected_texts,
    project,
    send,
    shown_texts,
)

SLOW = "[[tokens:400]] [[rate:40]]"  # about ten seconds: still running at every check


def last_reply(served: Served, name: str) -> dict[str, Any]:
    messages = served.committed(name)
    assert messages[-1]["role"] == "assistant", messages
    return messages[-1]


def shown_reply(page: Page) -> str:
    text = page.locator("#messages .msg.assistant:not(.streaming) > .text").last.text_content()
    return str(text).strip()


def test_a_turn_in_the_background_ends_in_a_toast_that_opens_it(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    expect(page.locator("#status-total")).to_have_text("0")
    expect(page.locator("#status-running")).to_be_hidden()
    assert "token" not in page.url  # kept in sessionStorage, not in the address bar
    expect(page.locator("#provider")).to_have_text("simulated replies")
    create_project(page, "alpha")
    create_project(page, "beta")
    project(page, "alpha").locator("button").click()
    expect(page.locator("#chat-title")).to_have_text("alpha")
    shots("two-projects")

    send(page, f"{SLOW} tell me about the stage")
    expect(page.locator("#streaming .text")).not_to_be_empty()
    expect(project(page, "alpha").locator(".spinner")).to_be_visible()
    expect(page.locator("#stop")).to_be_enabled()
    shots("streaming")

    # Switching projects never stops the session: alpha keeps running while beta is shown.
    project(page, "beta").locator("button").click()
    expect(page.locator("#chat-title")).to_have_text("beta")
    expect(project(page, "alpha").locator(".spinner")).to_be_visible()
    expect(project(page, "beta").locator(".dot.idle")).to_be_visible()
    expect(page.locator("#status-total")).to_have_text("2")
    expect(page.locator("#status-running")).to_have_text("1")
    expect(page.locator("#status-spinner")).to_be_visible()
    expect(page).to_have_title("(1 running) beta · greenroom")
    page.click("#status")
    row = page.locator("#sessions-rows tr", has_text="alpha")
    expect(row.locator(".preview")).not_to_be_empty()
    expect(row.locator("button.stop")).to_be_enabled()
    shots("sessions-list")
    page.click("#status")
    expect(page.locator("#sessions-panel")).to_be_hidden()

    toast = page.locator(".toast", has_text="alpha")
    expect(toast).to_be_visible()
    expect(toast.locator("strong")).to_have_text("alpha finished")
    expect(project(page, "alpha").locator(".dot.idle")).to_be_visible()
    expect(page.locator("#status-running")).to_be_hidden()
    expect(page.locator("#status-spinner")).to_be_hidden()
    expect(page).to_have_title("beta · greenroom")
    shots("toast")

    toast.locator("button.view").click()
    expect(toast).to_be_hidden()
    expect(page.locator("#chat-title")).to_have_text("alpha")
    committed = last_reply(served, "alpha")["content"]
    expect(page.locator("#messages .msg.assistant > .text").last).to_have_text(committed)
    expect(page.locator("#messages .msg.assistant .label").last).to_have_text("simulated")
    assert shown_reply(page) == committed.strip()
    shots("opened")


def test_stop_cuts_the_turn_and_shows_what_was_kept(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "gamma")
    send(page, "[[tokens:2000]] [[rate:40]] a long one")
    expect(page.locator("#streaming .text")).to_have_text(re.compile(r"\S+ \S+ \S+ \S+"))
    shots("streaming")
    page.click("#stop")
    expect(page.locator("#messages .msg.assistant .cut")).to_have_text("(cut short)")
    expect(page.locator("#stop")).to_be_disabled()
    expect(project(page, "gamma").locator(".dot.idle")).to_be_visible()
    reply = last_reply(served, "gamma")
    assert reply.get("stopped") is True
    assert shown_reply(page) == reply["content"].strip()
    assert len(reply["content"].split()) < 1000  # cut well before its end
    shots("stopped")


def test_reloading_mid_stream_continues_without_loss_or_duplication(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "delta")
    send(page, f"{SLOW} a story to reload in")
    streaming = page.locator("#streaming .text")
    expect(streaming).to_have_text(re.compile(r"(\S+ ){5}"))
    before = str(streaming.text_content()).strip()
    shots("before-reload")

    page.reload()
    expect(page.locator("#chat-title")).to_have_text("delta")  # the project is in the URL
    expect(streaming).to_have_text(re.compile(re.escape(before)))  # picked up where it was
    seen = [str(streaming.text_content()).strip()]
    shots("after-reload")
    expect(page.locator("#messages .msg.assistant:not(.streaming)")).to_have_count(1)
    committed = last_reply(served, "delta")["content"]
    for partial in [before, *seen]:
        assert committed.startswith(partial)
    assert shown_reply(page) == committed.strip()
    # One user message and one reply: nothing was applied twice.
    expect(page.locator("#messages .msg")).to_have_count(2)
    shots("completed")


def test_a_provider_failure_is_shown_with_its_meaning(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "epsilon")
    send(page, "[[fail:quota]] hello")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-text")).to_contain_text("out of quota")
    expect(page.locator("#error-text")).to_contain_text("quota: simulated quota failure")
    expect(project(page, "epsilon").locator(".dot.bad")).to_be_visible()
    shots("failed")
    page.click("#resume")  # a resumed failed turn completes, after the part kept
    expect(page.locator("#error")).to_be_hidden()
    expect(project(page, "epsilon").locator(".dot.idle")).to_be_visible()
    messages = served.committed("epsilon")
    assert [m["role"] for m in messages] == ["user", "assistant", "assistant"]
    assert messages[1]["stopped"] is True
    # The kept half and the resumed rest read as one reply, with a quiet marker.
    reply = page.locator("#messages .msg.assistant")
    expect(reply).to_have_count(1)
    expect(reply.locator("> .text")).to_have_text(messages[1]["content"] + messages[2]["content"])
    expect(reply.locator(".marker.resumed")).to_have_text(RESUMED)
    expect(reply.locator(".cut")).to_have_count(0)
    shots("resumed")


def test_tool_calls_and_their_results_show_and_new_chat_empties_the_pane(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "zeta")
    send(page, "create file notes.txt with hello")
    call = page.locator("#messages .tool-call")
    result = page.locator("#messages .tool-result")
    # Folded: the tool's name and a one-line summary; the whole of it one click away.
    expect(call.locator(".tool-name")).to_have_text("→ write_file")
    expect(call.locator(".tool-summary")).to_have_text("notes.txt, hello")
    expect(result.locator(".tool-name")).to_have_text("← write_file")
    expect(result.locator(".tool-summary")).to_have_text("wrote 5 bytes to notes.txt")
    expect(call.locator(".tool-body")).to_be_hidden()
    expect(page.locator("#messages .msg")).to_have_count(4)  # user, call, result, confirmation
    expect(page.locator("#stop")).to_be_disabled()
    shots("tool-call")
    call.locator("summary").click()
    expect(call.locator(".tool-body")).to_have_text(
        '{\n  "path": "notes.txt",\n  "content": "hello"\n}'
    )
    result.locator("summary").click()
    expect(result.locator(".tool-body")).to_have_text("wrote 5 bytes to notes.txt")
    shots("tool-call-open")
    name = str(page.locator("#chat-name").text_content())
    page.click("#new-chat")
    expect(page.locator("#messages .msg")).to_have_count(0)
    expect(page.locator("#chat-name")).not_to_have_text(name)
    shots("new-chat")


def test_a_server_restart_mid_stream_loses_nothing_on_the_page(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "eta")
    send(page, f"{SLOW} through a restart")
    expect(page.locator("#streaming .text")).to_have_text(re.compile(r"(\S+ ){5}"))
    served.stop()  # graceful: clients get 1001, the partial text is committed
    expect(page.locator("#conn")).to_contain_text("reconnecting")
    shots("disconnected")
    served.start()  # same port, same folders: the page reconnects by itself
    expect(page.locator("#conn")).to_be_hidden()
    expect(project(page, "eta").locator(".dot.idle")).to_be_visible()
    shots("reconnected")
    # Whatever the restart did to the turn, the page shows exactly what was committed.
    shown = shown_texts(page)
    committed = served.committed("eta")
    assert shown == expected_texts(committed), (committed, served.log_tail())


def test_a_project_mcp_file_is_shown_and_approved_before_its_servers_start(
    page: Page, served: Served, shots: Shots
) -> None:
    folder = served.folder / "data" / "projects" / "eta"
    folder.mkdir(parents=True)
    entry = {"command": sys.executable, "args": [str(SERVER)], "env": {"KEY": "s3cret"}}
    (folder / ".mcp.json").write_text(json.dumps({"mcpServers": {"demo": entry}}))
    page.goto(served.page_url)
    project(page, "eta").locator("button").click()
    expect(page.locator("#mcp")).to_be_visible()
    expect(page.locator("#mcp-servers li")).to_have_text(
        f"demo: {sys.executable} {SERVER} (sets KEY)"
    )
    assert "s3cret" not in page.content()
    shots("mcp-asks")

    page.click("#mcp-approve")
    expect(page.locator("#mcp")).to_be_hidden()
    send(page, "call tool mcp__demo__pid [[rate:inf]]")
    result = page.locator("#messages .tool-result")
    expect(result.locator(".tool-name")).to_have_text("← mcp__demo__pid")
    expect(result.locator(".tool-summary")).to_have_text(re.compile(r"^\d+$"))
    shots("mcp-approved")
    pid = int(str(result.locator(".tool-summary").text_content()))
    os.kill(pid, 0)  # the server runs

    served.stop(signal.SIGTERM)  # and stops with greenroom
    deadline = time.monotonic() + 30
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "the MCP server outlived greenroom"
        time.sleep(0.1)

"""The chat pane: Markdown replies rendered safely, queued messages, delete, in a real browser
against a real ``greenroom serve``."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from tests.web.conftest import Served, Shots, create_project, project, send

HOSTILE = """[[echo]] [[rate:inf]] # Title

<script>window.__pwned = "script"</script>
<img src="x" onerror="window.__pwned = 'img'">
<iframe src="javascript:window.__pwned = 'iframe'"></iframe>
<svg onload="window.__pwned = 'svg'"><circle r="4"/></svg>
<style>body { display: none }</style>
<a href="https://example.org/" onclick="window.__pwned = 'click'">a fine link</a>

[a bad link](javascript:window.__pwned='href') and ![an image](https://example.org/x.png)
"""


def test_a_markdown_reply_is_rendered_with_highlighted_code(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "md")
    send(page, "[[markdown]] [[rate:200]] plan the footer")
    reply = page.locator("#messages .msg.assistant:not(.streaming) .md")
    expect(reply.locator("h2")).to_have_text("A plan for the footer")
    expect(reply.locator("strong")).to_have_text("in order")
    expect(reply.locator("ol > li")).to_have_count(3)
    expect(reply.locator("table th")).to_have_text(["file", "change"])
    expect(reply.locator("table td code").first).to_have_text("base.html")
    code = reply.locator("pre code.language-python")
    expect(code).to_contain_text('return f"<footer>(c) {year}</footer>"')
    expect(code.locator(".hljs-keyword").first).to_have_text("def")
    expect(code.locator(".hljs-string").first).to_contain_text("The footer's text.")
    link = reply.locator("a", has_text="the guide")
    expect(link).to_have_attribute("href", "https://example.org/footer")
    expect(link).to_have_attribute("target", "_blank")
    expect(link).to_have_attribute("rel", "noopener noreferrer")
    expect(reply.locator("blockquote")).to_have_text("Nothing else changes.")
    shots("markdown")
    # The Markdown is what was committed: the page only renders it.
    messages = served.committed("md")
    assert "```python" in messages[-1]["content"]


def test_no_script_from_a_model_ever_runs(page: Page, served: Served, shots: Shots) -> None:
    page.goto(served.page_url)
    create_project(page, "xss")
    send(page, HOSTILE)
    reply = page.locator("#messages .msg.assistant:not(.streaming) .md")
    expect(reply.locator("h1")).to_have_text("Title")
    for tag in ("script", "img", "iframe", "svg", "style"):
        expect(reply.locator(tag)).to_have_count(0)
    handlers = reply.evaluate(
        "node => [...node.querySelectorAll('*')].flatMap("
        "e => [...e.attributes].map(a => a.name)).filter(n => n.startsWith('on'))"
    )
    assert handlers == []
    bad = reply.locator("a", has_text="a bad link")
    assert (bad.get_attribute("href") or "").startswith("javascript:") is False
    # The image became a link to it: nothing is loaded from elsewhere.
    expect(reply.locator("a", has_text="an image")).to_have_attribute(
        "href", "https://example.org/x.png"
    )
    # HTML the model writes shows as text.
    expect(reply).to_contain_text('<script>window.__pwned = "script"</script>')
    expect(reply).to_contain_text("onerror=")
    reply.locator("a", has_text="a bad link").click()
    page.locator("#messages .msg.user").click()
    assert page.evaluate("window.__pwned") is None
    expect(page.locator("body")).to_be_visible()
    # The user's own text shows as written, never as HTML.
    expect(page.locator("#messages .msg.user .text")).to_contain_text("<script>window.__pwned")
    shots("sanitized")


def test_queued_messages_show_and_escape_stops_the_turn_and_them(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "queue")
    send(page, "[[tokens:2000]] [[rate:40]] the first")
    expect(page.locator("#streaming .text")).not_to_be_empty()
    send(page, "the second, waiting")
    send(page, "the third, waiting too")
    expect(page.locator("#queued")).to_have_text("2 queued")
    expect(page.locator("#queue-items .queued-text")).to_have_text(
        ["the second, waiting", "the third, waiting too"]
    )
    expect(page.locator("#queue")).to_contain_text("stop discards them all")
    shots("queued")
    page.locator("#input").focus()
    page.keyboard.press("Escape")  # stops the turn being viewed, and so discards the queue
    expect(page.locator("#queue")).to_be_hidden()
    expect(page.locator("#stop")).to_be_disabled()
    expect(page.locator("#messages .msg.assistant .cut")).to_have_text("(cut short)")
    messages = served.committed("queue")
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[-1]["stopped"] is True


def test_deleting_the_session_being_viewed_asks_and_leaves_a_usable_view(
    page: Page, served: Served, shots: Shots
) -> None:
    page.goto(served.page_url)
    create_project(page, "gone")
    send(page, "[[rate:inf]] [[tokens:5]] hello")
    expect(page.locator("#messages .msg.assistant")).to_have_count(1)
    expect(page).to_have_title("gone · greenroom")
    name = str(page.locator("#chat-name").text_content())
    page.click("#delete")
    expect(page.locator("#confirm")).to_be_visible()
    page.keyboard.press("Escape")  # the dialog's own Escape: nothing deleted
    expect(page.locator("#confirm")).to_be_hidden()
    expect(page.locator("#chat-name")).to_have_text(name)

    page.click("#delete")
    page.click("#confirm-delete")
    expect(page.locator("#chat-name")).to_have_text("session deleted")
    expect(page.locator("#empty")).to_contain_text("The session was deleted")
    expect(page.locator("#messages .msg")).to_have_count(0)
    expect(project(page, "gone").locator(".ind")).to_have_attribute("class", "ind")
    expect(page.locator("#status-total")).to_have_text("0")
    expect(page.locator("#input")).to_be_enabled()
    expect(page.locator("#delete")).to_be_disabled()
    shots("deleted")
    assert served.run(lambda client: client.list_sessions())["sessions"] == []

    # Ready for a new message: it opens the project again (its history comes back with it).
    send(page, "[[rate:inf]] [[tokens:5]] again")
    expect(project(page, "gone").locator(".dot.idle")).to_be_visible()
    expect(page.locator("#messages .msg.user").last).to_have_text("[[rate:inf]] [[tokens:5]] again")
    expect(page.locator("#messages .msg.assistant")).to_have_count(2)
    expect(page.locator("#chat-name")).to_have_text(name)
    shots("reopened")


def test_a_long_reply_streams_in_spaced_redraws_and_ends_whole(page: Page, served: Served) -> None:
    page.goto(served.page_url)
    create_project(page, "long")
    send(page, "[[tokens:6000]] [[rate:1500]] a long one")
    streaming = page.locator("#streaming .text")
    # Past 20,000 characters the redraws are spaced, but they go on.
    page.wait_for_function(
        "() => (document.querySelector('#streaming .text')?.textContent.length ?? 0) > 20000"
    )
    expect(streaming).to_have_count(0)  # the turn ended
    committed = served.committed("long")[-1]["content"]
    assert len(committed) > 25000
    shown = page.locator("#messages .msg.assistant > .text").last.text_content()
    assert " ".join(str(shown).split()) == " ".join(committed.split())

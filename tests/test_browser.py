"""The web form in a real headless Chromium (Debian's package, driven by Playwright)."""

from pathlib import Path

import pytest

from verbatim.server import create_app

pytestmark = [pytest.mark.slow, pytest.mark.browser]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
QUESTION = "What if my husband refuses couples therapy?"


@pytest.fixture(scope="module")
def base_url(default_engine, serve):
    ARTIFACTS.mkdir(exist_ok=True)
    with serve(create_app(default_engine.settings, engine=default_engine)) as url:
        yield url


def in_viewport(page, selector: str) -> bool:
    return page.eval_on_selector(
        selector,
        "e => { const r = e.getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= window.innerHeight && r.height > 0; }",
    )


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_ask_read_quotes_and_show_in_document(browser, base_url, javascript):
    context = browser.new_context(
        java_script_enabled=javascript, viewport={"width": 1000, "height": 800}
    )
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(base_url + "/")
    page.get_by_label("Ask a question").fill(QUESTION)
    page.get_by_role("button", name="Ask").click()
    page.wait_for_selector("article.card mark")
    cards = page.locator("article.card")
    assert cards.count() >= 2
    first = cards.first
    assert first.locator("mark").inner_text().strip()
    assert first.locator("cite").inner_text().strip()
    titles = " ".join(cards.locator("cite").all_inner_texts())
    assert "Help! Can I Convince My Partner" in titles and "What If My Husband" in titles
    page.screenshot(path=ARTIFACTS / f"answer-{'js' if javascript else 'nojs'}.png", full_page=True)
    quote = first.locator("mark").inner_text().strip()
    first.get_by_role("link", name="Show in document").click()
    page.wait_for_selector("mark#quote")
    assert quote.split()[0] in page.locator("mark#quote").inner_text()
    assert in_viewport(page, "mark#quote")
    page.screenshot(path=ARTIFACTS / f"document-{'js' if javascript else 'nojs'}.png")
    assert not dialogs
    context.close()


def test_phone_width_has_no_horizontal_scroll(browser, base_url):
    context = browser.new_context(viewport={"width": 375, "height": 740})
    page = context.new_page()
    page.goto(f"{base_url}/?q=How+can+I+get+my+partner+to+go+to+therapy%3F")
    page.wait_for_selector("article.card mark")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375
    page.screenshot(path=ARTIFACTS / "answer-phone.png", full_page=True)
    context.close()


def test_script_in_question_is_shown_as_text(browser, base_url):
    context = browser.new_context()
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    payload = "<script>alert(1)</script> therapy <img src=x onerror=alert(2)>"
    page.goto(base_url + "/")
    page.get_by_label("Ask a question").fill(payload)
    page.get_by_role("button", name="Ask").click()
    page.wait_for_load_state("networkidle")
    assert page.get_by_label("Ask a question").input_value() == payload
    assert page.locator('script:not([src="/static/feedback.js"])').count() == 0  # only our own
    assert page.locator("img").count() == 0
    assert not dialogs
    context.close()

"""The quote cards' feedback buttons in a real headless Chromium, with and without JavaScript.
Fake embedder; skipped where Chromium is not installed (see the `browser` fixture)."""

from urllib.parse import quote_plus

import pytest

from verbatim.engine import ingest_paths, open_engine
from verbatim.feedback import FeedbackStore
from verbatim.server import create_app

from .test_feedback import QUESTION

pytestmark = pytest.mark.browser


@pytest.fixture
def site(settings, tiny_corpus, fake_embedder, serve):
    ingest_paths([tiny_corpus], settings, fake_embedder)
    engine = open_engine(settings, fake_embedder)
    try:
        with serve(create_app(settings, engine=engine)) as url:
            yield settings, url
    finally:
        engine.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_a_button_records_feedback_and_thanks(browser, site, javascript):
    settings, url = site
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    problems = []
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(f"{url}/?q={quote_plus(QUESTION)}")
    page.wait_for_selector("article.card form.feedback")
    forms = page.locator("form.feedback").count()
    address = page.url
    first = page.locator("article.card").first
    first.get_by_role("button", name="Helpful", exact=True).click()
    page.locator(".feedback-thanks").wait_for()
    assert "Thank you" in page.locator(".feedback-thanks").inner_text()
    assert page.locator("article.card").first.locator("form.feedback").count() == 0
    assert page.locator("form.feedback").count() == forms - 1  # the other cards keep theirs
    if javascript:
        assert page.url == address  # no navigation: sent with fetch
    else:
        assert "thanked=" in page.url and page.url.endswith("#thanks")
    (row,) = FeedbackStore(settings.data_dir).rows()
    assert row.verdict == "helpful" and row.question == QUESTION
    assert not problems  # no script error, no CSP violation
    context.close()

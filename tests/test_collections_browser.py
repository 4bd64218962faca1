"""The collection selector and the Narrow form in headless Chromium (fake embedder: the form's
behaviour does not depend on the model)."""

from urllib.parse import parse_qs, urlparse

import pytest

from verbatim.engine import open_engines
from verbatim.server import create_app

pytestmark = pytest.mark.browser


@pytest.fixture
def base_url(two, fake_embedder, serve):
    settings, _ = two
    engines = open_engines(settings, fake_embedder)
    with serve(create_app(settings, engine=engines)) as url:
        yield url
    for engine in engines.values():
        engine.close()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_choose_a_collection_narrow_and_share_the_link(browser, base_url, javascript):
    context = browser.new_context(java_script_enabled=javascript)
    page = context.new_page()
    page.goto(base_url + "/")
    page.get_by_label("Ask a question").fill("How do I fly a kite?")
    page.get_by_label("Document set").select_option("papers")
    narrow = page.locator("details.narrow")
    assert narrow.get_attribute("open") is None  # closed until a filter is set
    narrow.locator("summary").click()
    page.get_by_label("Author").fill("Kim Flyer")
    page.get_by_label("From").fill("2021-01-01")
    page.get_by_role("button", name="Ask").click()
    page.wait_for_selector("article.card mark")
    query = parse_qs(urlparse(page.url).query)
    assert query["collection"] == ["papers"] and query["author"] == ["Kim Flyer"]
    assert query["date_from"] == ["2021-01-01"]
    cited = page.locator("article.card cite").all_inner_texts()
    assert cited and set(cited) <= {"Flying Kites", "Keeping Bees"}  # Kim's, dated 2021 on

    shared = context.new_page()  # the same link opens the same answer, filters shown
    shared.goto(page.url)
    shared.wait_for_selector("article.card mark")
    assert shared.locator("article.card cite").all_inner_texts() == cited
    assert shared.get_by_label("Document set").input_value() == "papers"
    assert shared.locator("details.narrow").get_attribute("open") is not None
    assert shared.get_by_label("Author").input_value() == "Kim Flyer"
    shared.locator("article.card").first.get_by_role("link", name="Show in document").click()
    shared.wait_for_selector("mark#quote")
    assert shared.locator("h1").inner_text() in cited
    context.close()

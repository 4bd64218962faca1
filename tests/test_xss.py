"""Hostile documents and questions in a real Chromium: nothing they carry ever runs.

The fake embedder answers: what is checked is escaping, not ranking.
"""

import json
from pathlib import Path
from urllib.parse import quote

import pytest

from verbatim.engine import Engine, ingest_paths
from verbatim.index import load_index
from verbatim.server import create_app
from verbatim.settings import Settings

pytestmark = pytest.mark.browser
PAYLOADS = [
    line for line in (Path(__file__).parent / "xss_payloads.txt").read_text().splitlines() if line
]
INJECTED = """() => {
  const bad = [];
  for (const el of document.querySelectorAll('*')) {
    for (const attr of el.attributes) {
      if (attr.name.startsWith('on')) bad.push(el.tagName + ' ' + attr.name);
      if (/^\\s*javascript:/i.test(attr.value)) bad.push(el.tagName + ' ' + attr.name);
    }
  }
  // The page's own script (served from /static, allowed by the CSP) is the only one expected.
  const tags = ['script:not([src="/static/feedback.js"])', 'iframe', 'object', 'embed', 'img',
                'svg', 'style', 'base', 'meta[http-equiv]'];
  for (const tag of tags)
    if (document.querySelector(tag)) bad.push(tag);
  return bad;
}"""


@pytest.fixture
def hostile_site(browser, tmp_path, fake_embedder, serve):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i, payload in enumerate(PAYLOADS):
        url = payload if i % 2 else "javascript:alert(1)"
        (docs / f"p{i:02d}.md").write_text(
            f"---\ntitle: {json.dumps('Kites ' + payload)}\nauthor: {json.dumps(payload)}\n"
            f"url: {json.dumps(url)}\n---\n\nKite number {i} flies high. {payload} "
            f"Kite number {i} is red and {payload} sails.\n",
            encoding="utf-8",
        )
    # Every question answers (no abstention), so that every payload is shown as a quote.
    settings = Settings(data_dir=tmp_path / "data", model="fake", progress=False, min_score=0.0)
    report, skipped = ingest_paths([docs], settings, fake_embedder)
    assert report.documents == len(PAYLOADS) and not skipped
    engine = Engine(settings, load_index(settings), fake_embedder)
    with serve(create_app(settings, engine=engine)) as url:
        yield url
    engine.close()


def test_no_payload_runs_anywhere(browser, hostile_site):
    dialogs, missing_csp, injected = [], [], []
    page = browser.new_page()
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

    def check(response) -> None:
        if response.request.resource_type == "document":
            if "frame-ancestors 'none'" not in response.headers.get("content-security-policy", ""):
                missing_csp.append(response.url)

    page.on("response", check)
    page.set_content("<p><img src=x onerror=alert(1)><a href='javascript:x'>x</a></p>")
    assert len(page.evaluate(INJECTED)) >= 3  # the checker does see injections
    dialogs.clear()
    for i, payload in enumerate(PAYLOADS):
        for path in (
            f"/?q={quote('kite number ' + str(i) + ' ' + payload)}",
            f"/documents/p{i:02d}?start=0&end=30",
        ):
            page.goto(hostile_site + path)
            page.wait_for_load_state("load")
            bad = page.evaluate(INJECTED)
            if bad:
                injected.append((path, bad))
    page.goto(hostile_site + "/?q=kite+number+3")
    assert page.locator("article.card:not(.weak) mark").count() >= 1  # the payload docs answer
    page.close()
    assert dialogs == []
    assert injected == []
    assert missing_csp == []

"""Hostile documents and questions in a real Chromium: nothing they carry ever runs."""

import json
import socket
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest
from verbatim.server import create_app

from verbatim.engine import ingest_paths, open_engine
from verbatim.settings import Settings

from .test_browser import CHROMIUM, FLAGS

pytestmark = [pytest.mark.slow, pytest.mark.browser]
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
  const tags = ['script', 'iframe', 'object', 'embed', 'img', 'svg', 'style', 'base',
                'meta[http-equiv]'];
  for (const tag of tags)
    if (document.querySelector(tag)) bad.push(tag);
  return bad;
}"""


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory, real_embedder):
    if CHROMIUM is None:
        pytest.skip("chromium is not installed")
    root = tmp_path_factory.mktemp("hostile")
    docs = root / "docs"
    docs.mkdir()
    for i, payload in enumerate(PAYLOADS):
        url = payload if i % 2 else "javascript:alert(1)"
        (docs / f"p{i:02d}.md").write_text(
            f"---\ntitle: {json.dumps('Kites ' + payload)}\nauthor: {json.dumps(payload)}\n"
            f"url: {json.dumps(url)}\n---\n\nKite number {i} flies high. {payload} "
            f"Kite number {i} is red and {payload} sails.\n",
            encoding="utf-8",
        )
    settings = Settings(data_dir=root / "data", progress=False)
    report, skipped = ingest_paths([docs], settings, real_embedder)
    assert report.documents == len(PAYLOADS) and not skipped
    engine = open_engine(settings, real_embedder)
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, engine=engine), port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    engine.close()


def test_no_payload_runs_anywhere(hostile_site):
    from playwright.sync_api import sync_playwright

    dialogs, missing_csp, injected = [], [], []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))

        def check(response) -> None:
            if response.request.resource_type == "document":
                if "frame-ancestors 'none'" not in response.headers.get(
                    "content-security-policy", ""
                ):
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
        assert page.locator("article.card mark").count() >= 1  # the payload docs do answer
        browser.close()
    assert dialogs == []
    assert injected == []
    assert missing_csp == []

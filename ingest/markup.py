"""HTML and EPUB as a reader sees them: the page's visible main text, walked from the DOM.

Nothing is added that the page does not print (no Markdown, bullets or fences) and inline
text is never cut, so every paragraph is, white space aside, a run of lxml's `text_content()`
of the page. What is left out goes whole: invisible elements (scripts, styles, `hidden`),
page chrome (navigation, sidebars, footers, cookie banners, "Previous/Next") and header-link
anchors (Sphinx's and MkDocs's `¶`).
"""

from __future__ import annotations

import json
import posixpath
import re
from typing import Any
from urllib.parse import unquote

from verbatim.ingest.read import SNIFF_BYTES, Block, Blocks, UnreadableFile, open_zip, read_member
from verbatim.records import DEFINITION, ITEM, ROW, TERM

HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
BLOCK_TAGS = HEADINGS | frozenset(
    "address article aside blockquote body caption center dd details dialog dir div dl dt "
    "fieldset figcaption figure footer form header hgroup hr html legend li main menu nav ol "
    "p pre section summary table tbody tfoot thead tr ul".split()
)
INVISIBLE_TAGS = frozenset(
    "script style noscript template head title meta link iframe object embed canvas svg "
    "button input select textarea option datalist audio video map area source track".split()
)
CHROME_TAGS = frozenset({"nav", "aside", "footer", "menu", "dialog"})  # never the main text
CHROME_ROLES = frozenset(
    "navigation search banner contentinfo complementary menu menubar toolbar dialog "
    "alertdialog".split()
)
# Words of a class or id (split at "-" and "_") that mark page chrome inside the main text.
CHROME_WORDS = frozenset(
    "nav navbar navigation menu sidebar breadcrumb breadcrumbs footer cookie cookies consent "
    "gdpr share sharing social sharedaddy related comments respond advert advertisement ad "
    "ads sponsored promo newsletter subscribe signup popup modal banner skip pagination pager "
    "prev previous next widget toolbar byline meta toc".split()
)
# ... and, glued to other words ("sphinxsidebar", "topnav"), these.
CHROME_STEMS = ("sidebar", "navbar", "nav", "menu", "footer", "cookie", "breadcrumb", "share")
HIDDEN_CLASSES = frozenset(
    "screen-reader-text sr-only visually-hidden visuallyhidden screenreader hidden "
    "headerlink anchorjs-link anchor-link heading-anchor hash-link permalink".split()
)
# The blocks whose text is of a kind of its own: list items, table rows, definition lists.
CONTAINER_KINDS = {"li": ITEM, "tr": ROW, "dt": TERM, "dd": DEFINITION}
ANCHOR_MARKS = frozenset({"", "¶", "#", "§", "🔗", "\u200b", "#\u200b"})
_HTML_SPACE = re.compile(r"[ \t\n\r\f]+")
_BREAK = "\u2028"  # a <br> while inline text is collected; a line break in the clean text
_TITLE_SEPARATORS = re.compile(r"\s+[—|–·»-]\s+")
# Chrome holds links, little else: a block of at least MENU_LINKS links with at least
# MENU_LINKED_SHARE of its text in them is a menu (an article's "see also" list is deeper down).
MENU_LINKS = 3
MENU_LINKED_SHARE = 0.7
# What its class or id calls chrome is dropped only while it holds at most this share of the
# main text: past it, it is a wrapper of the page ("wy-nav-content").
CHROME_MAX_SHARE = 0.5
# The <article> inside a <main> with at least this share of its text is the main text; the
# rest of the <main> is sidebars.
DOMINANT_SHARE = 0.6
DOCTYPE_WITHIN = 65_536  # a DOCTYPE comes before the root element: look for it this far
_INTERNAL_SUBSET = re.compile(rb"<!doctype[^>\[]*\[(.*?)\]\s*>", re.DOTALL | re.IGNORECASE)
_DECLARED = re.compile(rb"<!ENTITY\s+([^\s%][^\s\"'>]*)")
# The most one EPUB chapter (one XHTML file) may unpack to. The longest books' chapters are a
# few MB; a chapter that unpacks to far more is a zip bomb, however small the EPUB.
MAX_CHAPTER = 64 * 2**20


class ParserLimit(UnreadableFile):
    """The HTML parser stopped at one of its limits: the text from there on would be lost."""


def _without_dtd(raw: bytes) -> bytes:
    """`raw` without an internal DTD subset (`<!DOCTYPE html [<!ENTITY x "...">]>`) and
    without references to the entities it declares. HTML has no DTD: the HTML parser would
    keep the subset's end (`]>`) and the references (`&x;`) as text. The entities are never
    expanded (an XML bomb, or an external entity reading a file)."""
    start = raw[:DOCTYPE_WITHIN].lower().find(b"<!doctype")
    match = _INTERNAL_SUBSET.match(raw, start) if start >= 0 else None
    if match is None:
        return raw
    rest = raw[: match.start()] + raw[match.end() :]
    names = _DECLARED.findall(match.group(1))
    if not names:
        return rest
    return re.sub(b"&(?:" + b"|".join(map(re.escape, names)) + b");", b"", rest)


def parse_html(raw: bytes):
    """The page's DOM (lxml.html). UTF-8 unless the page declares otherwise.

    Raises:
        UnreadableFile: binary or not HTML; `ParserLimit` where the parser stopped early
            (nested deeper than 2,048 elements), rather than losing the rest silently.
    """
    import lxml.html

    if b"\x00" in raw[:SNIFF_BYTES]:
        raise UnreadableFile("binary file (contains NUL bytes)")
    raw = _without_dtd(raw)
    try:
        raw.decode("utf-8")
        encoding: str | None = "utf-8"
    except UnicodeDecodeError:
        encoding = None  # libxml2 reads the page's <meta charset>
    parser = lxml.html.HTMLParser(encoding=encoding, huge_tree=True, remove_comments=True)
    try:
        tree = lxml.html.document_fromstring(raw, parser=parser)
    except Exception as exc:  # lxml's ParserError, or an empty document
        raise UnreadableFile(f"not readable as HTML ({exc})") from None
    stop = next((e for e in parser.error_log if e.type_name == "ERR_RESOURCE_LIMIT"), None)
    if stop is not None:
        limit = stop.message.split(",")[0].strip()  # "Excessive depth in document: 2048"
        raise ParserLimit(
            f"past the HTML parser's limits (it stopped at line {stop.line}: {limit}); the "
            "text from there on would be lost, so the file is not read"
        )
    return tree


def read_html(raw: bytes) -> Blocks:
    """An HTML page: its main text as blocks, and its metadata."""
    tree = parse_html(raw)
    meta = page_meta(tree)
    _drop_invisible(tree)
    sizes = TextSizes(tree)
    root = main_element(tree, sizes)
    _drop_chrome(root, sizes, fallback=root.tag == "body")
    blocks = html_blocks(root)
    if not any(not b.heading for b in blocks):
        raise UnreadableFile("no main text found in the HTML")
    page_title = meta.pop("page_title", "")
    heading = main_heading(root, page_title)
    meta["title"], site = clean_title(heading, page_title, meta.get("title"))
    meta["site"] = meta.get("site") or site
    return Blocks(blocks, meta)


def _remove(el) -> None:
    """Take `el` out of the tree, keeping the text that follows it."""
    parent = el.getparent()
    if parent is None:
        return
    if el.tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _is_invisible(el) -> bool:
    if not isinstance(el.tag, str) or el.tag in INVISIBLE_TAGS:
        return True
    if el.get("hidden") is not None or el.get("aria-hidden") == "true":
        return True
    style = (el.get("style") or "").replace(" ", "").lower()
    if "display:none" in style or "visibility:hidden" in style:
        return True
    return bool(HIDDEN_CLASSES.intersection((el.get("class") or "").lower().split()))


def _drop_invisible(tree) -> None:
    """Remove what a browser does not show, and header-link anchors (`¶`)."""
    doomed = [el for el in tree.iter() if _is_invisible(el)]
    for heading in tree.iter(*HEADINGS, "dt"):
        doomed += [a for a in heading.iter("a") if a.text_content().strip() in ANCHOR_MARKS]
    for el in doomed:
        _remove(el)


def _count(text: str | None) -> int:
    return len("".join(text.split())) if text else 0


class TextSizes:
    """Per element, the characters (white space aside) of its `text_content()`, of the links
    in it, and how many links it holds below it, all measured in one pass up the tree.

    Measuring each element's text on its own was quadratic: in the cells of a table row (each
    cell compared with every other) and in nested elements (each measured again by every
    ancestor). The tree must not change while its sizes are in use.
    """

    def __init__(self, root) -> None:
        from lxml import etree

        self.text: dict[Any, int] = {}
        self.linked: dict[Any, int] = {}  # text in <a> elements, the element itself included
        self.linked_below: dict[Any, int] = {}  # ... below it only
        self.links_below: dict[Any, int] = {}  # <a> elements below it
        self._row_max: dict[Any, int] = {}
        for _, el in etree.iterwalk(root, events=("end",)):
            self._measure(el)

    def _measure(self, el) -> None:
        if not isinstance(el.tag, str):  # a comment or processing instruction: no text
            self.text[el] = self.linked[el] = self.linked_below[el] = self.links_below[el] = 0
            return
        children = list(el)
        size = _count(el.text) + sum(self.text[c] + _count(c.tail) for c in children)
        below = sum(self.linked[c] for c in children)
        self.text[el], self.linked_below[el] = size, below
        self.linked[el] = below + (size if el.tag == "a" else 0)
        self.links_below[el] = sum(self.links_below[c] + (c.tag == "a") for c in children)

    def unlinked(self, el) -> int:
        return self.text[el] - self.linked[el]

    def row_max(self, row) -> int:
        """The most text outside links in any cell of `row`."""
        if row not in self._row_max:
            cells = [self.unlinked(c) for c in row if c.tag in ("td", "th")]
            self._row_max[row] = max(cells, default=0)
        return self._row_max[row]


def main_element(tree, sizes: TextSizes):
    """The element holding the page's main text: `role=main`, `<main>`, `<article>`, or
    Sphinx's and blogs' usual containers; the body when the page marks none."""
    body = tree.find("body")
    body = body if body is not None else tree
    for path in (
        ".//*[@role='main']",
        ".//main",
        ".//article",
        ".//*[@itemprop='articleBody']",
        ".//div[@class='body']",
        ".//*[@id='content']",
        ".//*[@class='entry-content']",
    ):
        found = body.findall(path)
        if found:
            best = max(found, key=sizes.text.__getitem__)
            if sizes.text[best] > 0:
                return _dominant_article(best, sizes)
    return body


def _dominant_article(el, sizes: TextSizes):
    """Inside a `<main>` that also holds sidebars, the `<article>` with most of its text."""
    articles = el.findall(".//article")
    if not articles:
        return el
    best = max(articles, key=sizes.text.__getitem__)
    return best if sizes.text[best] >= DOMINANT_SHARE * sizes.text[el] else el


def _is_chrome(el, fallback: bool) -> bool:
    if el.tag not in BLOCK_TAGS:
        return False  # an inline element is part of the text it sits in ("menuselection")
    if el.tag == "form" or (fallback and el.tag == "header"):
        return True
    words = re.split(r"[\s_-]+", f"{el.get('class') or ''} {el.get('id') or ''}".lower())
    return any(
        w in CHROME_WORDS or w.startswith(CHROME_STEMS) or w.endswith(CHROME_STEMS)
        for w in words
        if w
    )


def _beside_more_text(el, sizes: TextSizes) -> bool:
    """A table cell next to a cell with more text outside links: a column of a layout table
    (a sidebar of menus beside the page's text)."""
    if el.tag != "td" or el.getparent() is None:
        return False
    return sizes.row_max(el.getparent()) > sizes.unlinked(el)


def _link_heavy(el, root, sizes: TextSizes) -> bool:
    """A list of links near the top of a page without a marked main element, or in a table
    cell beside the one with the text (old table layouts): a menu. Lists of links deeper
    down are the page's own (references, "see also")."""
    if el.tag not in ("div", "ul", "ol", "table", "td") or el.getparent() is None:
        return False
    near_top = el.getparent() is root or el.getparent().getparent() is root
    if not near_top and not _beside_more_text(el, sizes):
        return False
    if sizes.links_below[el] < MENU_LINKS:
        return False
    return sizes.linked_below[el] >= MENU_LINKED_SHARE * max(sizes.text[el], 1)


def _drop_chrome(root, sizes: TextSizes, fallback: bool) -> None:
    """Remove page chrome inside the main element: navigation, asides and footers always;
    what only its class or id calls chrome unless it holds most of the page (a wrapper such as
    "wy-nav-content"); never inside code.

    Args:
        fallback: the page marks no main element, so `root` is its body: its `<header>` and
            lists of links are chrome too.
    """
    from lxml import etree

    total = sizes.text[root]
    doomed = []
    walker = etree.iterwalk(root, events=("start",))
    for _, el in walker:
        if el is root:
            continue
        if el.tag in ("pre", "code"):
            walker.skip_subtree()
        elif el.tag in CHROME_TAGS or (el.get("role") or "").lower() in CHROME_ROLES:
            doomed.append(el)
            walker.skip_subtree()
        elif _is_chrome(el, fallback) or (fallback and _link_heavy(el, root, sizes)):
            if sizes.text[el] <= CHROME_MAX_SHARE * total:
                doomed.append(el)
                walker.skip_subtree()
    for el in doomed:
        _remove(el)


def _collapse(text: str) -> str:
    return _HTML_SPACE.sub(" ", text).strip()


def html_blocks(root) -> list[Block]:
    """The blocks of `root` in document order: headings, paragraphs, list items, table rows,
    code (`<pre>`, lines kept). Inline text is collected as the page prints it."""
    from lxml import etree

    blocks: list[Block] = []
    buf: list[str] = []
    kinds: list[str] = []  # the kinds of the list items, rows, terms open around the text
    links = [0]  # links in the text collected

    def flush(heading: bool = False) -> None:
        text = _HTML_SPACE.sub(" ", "".join(buf)).replace(_BREAK, "\n")
        buf.clear()
        kind = kinds[-1] if kinds and not heading else ""
        if text.strip():
            blocks.append(Block(text, heading=heading, kind=kind, links=links[0]))
        links[0] = 0

    walker = etree.iterwalk(root, events=("start", "end"))
    for event, el in walker:
        tag = el.tag if isinstance(el.tag, str) else ""
        if event == "start":
            if tag == "pre":
                flush()
                blocks.append(Block(el.text_content(), code=True))
                walker.skip_subtree()
            elif tag == "br":
                buf.append(_BREAK)
            elif tag in BLOCK_TAGS:
                flush()
            kinds += [CONTAINER_KINDS[tag]] if tag in CONTAINER_KINDS else []
            links[0] += tag == "a"
            if tag != "pre" and el.text:
                buf.append(el.text)
            continue
        if tag in BLOCK_TAGS:
            flush(heading=tag in HEADINGS)
        if tag in CONTAINER_KINDS:
            kinds.pop()
        elif tag in ("td", "th"):
            buf.append(" ")
        if el.tail and el is not root:
            buf.append(el.tail)
    flush()
    return blocks


def main_heading(root, page_title: str) -> str:
    """The first `<h1>`; but where that is not in the `<title>` (a site's banner above every
    page) and another heading is the `<title>`, that heading."""
    h1 = next(iter(root.iter("h1")), None)
    first = _collapse(h1.text_content()) if h1 is not None else ""
    title = _collapse(page_title)
    if not first or not title or first in title:
        return first
    names = {title, _TITLE_SEPARATORS.split(title)[0]}
    for el in root.iter(*HEADINGS):
        if _collapse(el.text_content()) in names:
            return _collapse(el.text_content())
    return first


def clean_title(heading: str, page_title: str, meta_title: str | None) -> tuple[str, str]:
    """(title, site): the page's first `<h1>`, else its `og:title`, else its `<title>`; the
    site's name when the `<title>` ends with it ("random — ... — Python 3.11 documentation")."""
    page_title = _collapse(page_title)
    last = None
    for match in _TITLE_SEPARATORS.finditer(page_title):
        last = match
    site = page_title[last.end() :].strip() if last else ""
    title = _collapse(heading) or (meta_title or "").strip()
    if not title:
        title = page_title[: last.start()].strip() if last else page_title
    return title, ("" if not site or title.endswith(site) else site)


def _first_meta(tree, *names: str) -> str | None:
    for name in names:
        for el in tree.iter("meta"):
            key = (el.get("name") or el.get("property") or el.get("itemprop") or "").lower()
            value = (el.get("content") or "").strip()
            if key == name and value:
                return value
    return None


def _json_ld(tree) -> dict[str, Any]:
    """author, date and publisher from the page's JSON-LD (schema.org), where it has them."""
    found: dict[str, Any] = {}
    for script in tree.iter("script"):
        if (script.get("type") or "").lower() != "application/ld+json":
            continue
        try:
            data = json.loads(script.text or "")
        except ValueError:
            continue
        items = data.get("@graph", [data]) if isinstance(data, dict) else data
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            for key in ("author", "datePublished", "publisher"):
                value = item.get(key)
                value = value[0] if isinstance(value, list) and value else value
                value = value.get("name") if isinstance(value, dict) else value
                if isinstance(value, str) and value.strip() and key not in found:
                    found[key] = value.strip()
    return found


def _iso_date(value: str | None) -> str | None:
    match = re.match(r"(\d{4})-(\d{2})-(\d{2})", value or "")
    return "-".join(match.groups()) if match else None


def page_meta(tree) -> dict:
    """Title, author, date, canonical URL and site name from the page's head."""
    ld = _json_ld(tree)
    author = _first_meta(tree, "author", "article:author", "dc.creator", "parsely-author")
    if author and author.startswith(("http://", "https://")):
        author = None
    link = next((el for el in tree.iter("link") if el.get("rel") == "canonical"), None)
    published = _first_meta(
        tree, "article:published_time", "date", "dc.date", "dcterms.created", "datepublished"
    )
    times = [el.get("datetime") for el in tree.iter("time") if el.get("datetime")]
    title_el = tree.find(".//title")
    return {
        "title": _first_meta(tree, "og:title", "twitter:title"),
        "page_title": title_el.text_content() if title_el is not None else "",
        "author": author or ld.get("author"),
        "date": _iso_date(published or ld.get("datePublished") or (times[0] if times else None)),
        "url": (link.get("href") if link is not None else None) or _first_meta(tree, "og:url"),
        "site": _first_meta(tree, "og:site_name", "application-name") or ld.get("publisher"),
    }


def _opf(zf) -> tuple[str, Any]:
    """The package document's path and parsed XML."""
    from lxml import etree

    try:
        container = etree.fromstring(read_member(zf, "META-INF/container.xml"))
        path = container.xpath("//*[local-name()='rootfile']/@full-path")[0]
        return path, etree.fromstring(read_member(zf, path))
    except (KeyError, IndexError, etree.XMLSyntaxError) as exc:
        raise UnreadableFile(f"not a valid EPUB: no readable package document ({exc})") from None


def _dc(opf, name: str) -> list[str]:
    values = opf.xpath(f"//*[local-name()='metadata']/*[local-name()='{name}']")
    return [" ".join(v.xpath("string()").split()) for v in values if v.xpath("string()").strip()]


def _chapter_blocks(zf, name: str, lost: list[str]) -> list[Block]:
    """One chapter's blocks; a missing or broken chapter adds why to `lost` (the others still
    read). A zip bomb or a chapter past the parser's limits fails the whole EPUB.

    Raises:
        UnreadableFile: the chapter unpacks to more than `MAX_CHAPTER`, or `ParserLimit`.
    """
    try:
        size = zf.getinfo(name).file_size
    except KeyError:
        lost.append(f"chapter {name} is missing")
        return []
    if size > MAX_CHAPTER:
        raise UnreadableFile(
            f"chapter {name} unpacks to {size:,} bytes, over {MAX_CHAPTER:,} (a zip bomb?); "
            "not read"
        )
    try:
        chapter = parse_html(read_member(zf, name))
    except ParserLimit:
        raise
    except UnreadableFile as exc:
        lost.append(f"chapter {name}: {exc}")
        return []
    _drop_invisible(chapter)
    body = chapter.find("body")
    if body is None:
        return []
    _drop_chrome(body, TextSizes(body), fallback=False)
    return html_blocks(body)


def read_epub(raw: bytes) -> Blocks:
    """An EPUB: its spine's XHTML chapters in reading order, through the HTML path, with the
    title, authors, date and publisher of its package document (OPF)."""
    zf = open_zip(raw, "EPUB")
    path, opf = _opf(zf)
    base = posixpath.dirname(path)
    manifest = {
        item.get("id"): item.get("href")
        for item in opf.xpath("//*[local-name()='manifest']/*[local-name()='item']")
    }
    blocks: list[Block] = []
    lost: list[str] = []  # why chapters were not read
    for ref in opf.xpath("//*[local-name()='spine']/*[local-name()='itemref']/@idref"):
        href = (manifest.get(ref) or "").split("#")[0]
        if href:
            blocks += _chapter_blocks(zf, posixpath.join(base, unquote(href)), lost)
    if not any(not b.heading for b in blocks):
        why = f"; {lost[0]}" if lost else " (a book of images?)"
        raise UnreadableFile(f"no text in the EPUB's chapters{why}")
    meta = {
        "title": next(iter(_dc(opf, "title")), None),
        "author": ", ".join(_dc(opf, "creator")) or None,
        "date": _iso_date(next(iter(_dc(opf, "date")), None)),
        "site": next(iter(_dc(opf, "publisher")), None),
        "language": next(iter(_dc(opf, "language")), None),
    }
    return Blocks(blocks, meta)

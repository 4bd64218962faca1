"""Split clean text into sentences and passages, keeping exact `[start, end)` offsets."""

from __future__ import annotations

import hashlib
import re

from verbatim.records import CODE, LEAD_IN, Document, Passage, Sentence

# Words after which a full stop does not end a sentence.
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs e.g i.e cf fig no al approx dept est inc ltd co mt".split()
)
_BREAK_OR_TERMINAL = re.compile(r"\n|[.!?…]+[\"'”’)\]]*")
_WORD_BEFORE = re.compile(r"([A-Za-z][A-Za-z.]*)$")
WORD_WINDOW = 100
# The longest passage, in characters: `Settings.passage_chars`'s default (a paragraph or two,
# short enough that the embedding model reads all of it).
PASSAGE_CHARS = 900
# Hex digits of SHA-256 kept in a passage id: 64 bits, so a collision is unlikely below about
# four billion passages, and a short id to show and type.
ID_HEX_DIGITS = 16


def _is_boundary(text: str, end: int, next_pos: int, glued: bool) -> bool:
    """Whether a sentence ends at `end`, the next one starting at `next_pos`."""
    if next_pos >= len(text):
        return True
    nxt = text[next_pos]
    # Only the last WORD_WINDOW characters: searching from the start of the text made splitting
    # quadratic in the document's length (5 minutes for a 260-page PDF). No word the checks
    # below care about (an abbreviation, a single letter) is that long.
    word = _WORD_BEFORE.search(text, max(0, end - WORD_WINDOW), end)
    prev_word = word.group(1).rstrip(".").lower() if word else ""
    if text[end - 1] == "." or text[end - 1] in "\"'”’)]":
        if prev_word in ABBREVIATIONS or (len(prev_word) == 1 and prev_word.isalpha()):
            return False
    if glued:
        # "...hang out with.Seriously, the..." -- web text that lost its space.
        following = text[next_pos : next_pos + 2]
        return (
            len(prev_word) >= 2
            and prev_word.isalpha()
            and len(following) == 2
            and following[0].isupper()
            and following[1].islower()
        )
    return nxt.isupper() or nxt.isdigit() or nxt in "\"'“‘([¿¡*-–—"


def split_sentences(text: str, start: int, end: int) -> list[Sentence]:
    """Sentences of `text[start:end]`, trimmed of surrounding white space."""
    spans: list[tuple[int, int]] = []
    cursor = start
    pos = start
    while pos < end:
        # Jump to the next line break or sentence-ending punctuation (one regex search, not a
        # match tried at every character).
        m = _BREAK_OR_TERMINAL.search(text, pos, end)
        if not m:
            break
        if m.group() == "\n":
            spans.append((cursor, m.start()))
            cursor = pos = m.end()
            continue
        stop = m.end()
        nxt = stop
        while nxt < end and text[nxt] in " \t":
            nxt += 1
        glued = nxt == stop
        if nxt >= end or _is_boundary(text, stop, nxt, glued):
            spans.append((cursor, stop))
            cursor = stop
        pos = stop
    spans.append((cursor, end))
    sentences = []
    for s, e in spans:
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e > s:
            sentences.append(Sentence(s, e))
    return sentences


def _cap(text: str, sentences: list[Sentence], limit: int) -> list[Sentence]:
    """Break sentences longer than `limit` at white space, so no unit outgrows a passage."""
    out = []
    for s in sentences:
        start = s.start
        while s.end - start > limit:
            cut = text.rfind(" ", start + 1, start + limit)
            cut = cut if cut > start else start + limit
            out.append(Sentence(start, cut))
            start = cut
            while start < s.end and text[start].isspace():
                start += 1
        out.append(Sentence(start, s.end))
    return out


def split_code(text: str, start: int, end: int, limit: int) -> list[Sentence]:
    """A code block's units: the whole block, or, when longer than `limit`, runs of whole
    lines of at most `limit` (a longer line broken at white space, as `_cap` does). Code is
    never split into sentences: a line of code or of program output is no sentence."""
    units: list[Sentence] = []
    lo = hi = start
    for line in re.finditer(r"[^\n]*\n?", text[start:end]):
        line_end = start + line.end()
        if hi > lo and line_end - lo > limit:
            units.append(Sentence(lo, hi))
            lo = hi
        hi = line_end
        if line_end >= end:
            break
    units.append(Sentence(lo, end))
    trimmed = [Sentence(s.start, s.start + len(text[s.start : s.end].rstrip())) for s in units]
    return _cap(text, [s for s in trimmed if s.end > s.start], limit)


def _units(doc: Document, paragraphs, max_chars: int) -> list[list[Sentence]]:
    """A section's paragraphs as units of at most `max_chars` that a passage never splits.

    A paragraph is split into sentences (code into `split_code`'s units) and grouped; a
    lead-in's last unit and the first unit of the block it introduces make one unit when they
    fit together, so a passage never separates them.
    """
    text = doc.text
    kinds = {start: kind for start, _, kind in doc.blocks}
    units: list[list[Sentence]] = []
    glue = False  # the last unit ends with a lead-in
    for p_start, p_end in paragraphs:
        kind = kinds.get(p_start)
        if kind == CODE:
            sentences = split_code(text, p_start, p_end, max_chars)
        else:
            sentences = _cap(text, split_sentences(text, p_start, p_end), max_chars)
        groups: list[list[Sentence]] = []
        for s in sentences:
            if not groups or s.end - groups[-1][0].start > max_chars:
                groups.append([])
            groups[-1].append(s)
        if groups and glue and groups[0][-1].end - units[-1][0].start <= max_chars:
            units[-1] = units[-1] + groups.pop(0)
        units += groups
        glue = kind == LEAD_IN
    return units


def split_passages(doc: Document, max_chars: int = PASSAGE_CHARS) -> list[Passage]:
    """Paragraph-based passages of at most `max_chars`, never crossing a section boundary.

    Consecutive short paragraphs are merged; a paragraph longer than the limit is split between
    sentences, a code block between lines (`_units`). Ids hash the document id and the passage
    text, so they survive re-ingest.
    """
    passages: list[Passage] = []
    seen: dict[str, int] = {}
    for section in doc.sections:
        units = _units(doc, section.paragraphs, max_chars)
        current: list[Sentence] = []
        for unit in units:
            if current and unit[-1].end - current[0].start > max_chars:
                passages.append(_passage(doc, section.heading, section.role, current, seen))
                current = []
            current = current + unit
        if current:
            passages.append(_passage(doc, section.heading, section.role, current, seen))
    return passages


def _passage(
    doc: Document, heading: str, role: str, sentences: list[Sentence], seen: dict[str, int]
) -> Passage:
    start, end = sentences[0].start, sentences[-1].end
    body = doc.text[start:end]
    digest = hashlib.sha256(f"{doc.id}\0{body}".encode()).hexdigest()[:ID_HEX_DIGITS]
    seen[digest] = seen.get(digest, 0) + 1
    pid = digest if seen[digest] == 1 else f"{digest}-{seen[digest]}"
    return Passage(pid, doc.id, start, end, body, heading, role, tuple(sentences))

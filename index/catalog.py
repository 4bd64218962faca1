"""Which passages a filter lets answer, from columns over the documents, never a loop over
passages: each passage row has its document's code, and each document its author, site and
date codes, so a filter is a few array comparisons over the documents and one gather."""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from datetime import date

import numpy as np

from verbatim.errors import InvalidFilter
from verbatim.records import DocumentMeta, Filters

NO_DATE = -1
SHOWN_UNKNOWN = 10  # unknown document ids listed in the error, at most


def _day(value: str | None) -> int:
    """The proleptic ordinal of a document's ISO date (its first ten characters), or NO_DATE."""
    try:
        return date.fromisoformat((value or "")[:10]).toordinal()
    except ValueError:
        return NO_DATE


def _filter_day(field: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).toordinal()
    except (TypeError, ValueError):
        raise InvalidFilter(
            f"{field}: {value!r} is not an ISO 8601 date; write it as YYYY-MM-DD, e.g. 2024-03-01"
        ) from None


class Catalog:
    """The documents of one index as columns, for filtering. Built once, when it is loaded."""

    def __init__(self, documents: Mapping[str, DocumentMeta], passage_doc: list[str]) -> None:
        self.ids = list(documents)
        self.code = {doc_id: c for c, doc_id in enumerate(self.ids)}
        self.passage_code = np.fromiter(
            (self.code[d] for d in passage_doc), dtype=np.int32, count=len(passage_doc)
        )
        metas = list(documents.values())
        self._authors, self.author = _codes([m.author for m in metas])
        self._sites, self.site = _codes([m.site for m in metas])
        self.day = np.array([_day(m.date) for m in metas], dtype=np.int64)
        self._by_id = sorted(self.ids)
        self._id_code = np.array([self.code[i] for i in self._by_id], dtype=np.int64)
        self._by_source = sorted((m.source, c) for c, m in enumerate(metas))
        self._source_code = np.array([c for _, c in self._by_source], dtype=np.int64)

    def rows(self, filters: Filters) -> np.ndarray:
        """A boolean mask over passage rows: True where the passage's document passes.

        Raises:
            InvalidFilter: unknown document ids, a malformed date, or `date_from` after
                `date_to`; the message names the field.
        """
        return self.documents(filters)[self.passage_code]

    def documents(self, filters: Filters) -> np.ndarray:
        """A boolean mask over document codes (see `rows`)."""
        keep = np.ones(len(self.ids), dtype=bool)
        if filters.documents:
            keep &= self._listed(filters.documents)
        if filters.author is not None:
            keep &= self.author == self._authors.get(filters.author.casefold(), -2)
        if filters.site is not None:
            keep &= self.site == self._sites.get(filters.site.casefold(), -2)
        keep &= self._dated(filters)
        if filters.path:
            keep &= self._under(filters.path)
        return keep

    def _listed(self, ids: tuple[str, ...]) -> np.ndarray:
        unknown = [i for i in ids if i not in self.code]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:SHOWN_UNKNOWN])
            more = (
                f" and {len(unknown) - SHOWN_UNKNOWN} more" if len(unknown) > SHOWN_UNKNOWN else ""
            )
            raise InvalidFilter(
                f"documents: no document with id {shown}{more}; GET /api/documents lists them"
            )
        keep = np.zeros(len(self.ids), dtype=bool)
        keep[[self.code[i] for i in ids]] = True
        return keep

    def _dated(self, filters: Filters) -> np.ndarray:
        first = _filter_day("date_from", filters.date_from)
        last = _filter_day("date_to", filters.date_to)
        if first is not None and last is not None and first > last:
            raise InvalidFilter(
                f"date_from ({filters.date_from}) is after date_to ({filters.date_to}); "
                "swap them, or leave one out"
            )
        keep = np.ones(len(self.ids), dtype=bool)
        if first is not None or last is not None:
            keep &= self.day != NO_DATE
        if first is not None:
            keep &= self.day >= first
        if last is not None:
            keep &= self.day <= last
        return keep

    def _under(self, prefix: str) -> np.ndarray:
        """Documents whose id or source path starts with `prefix`: a range of each sorted list."""
        keep = np.zeros(len(self.ids), dtype=bool)
        lo = bisect.bisect_left(self._by_id, prefix)
        hi = bisect.bisect_left(self._by_id, prefix + "\U0010ffff")
        keep[self._id_code[lo:hi]] = True
        lo = bisect.bisect_left(self._by_source, (prefix,))
        hi = bisect.bisect_left(self._by_source, (prefix + "\U0010ffff",))
        keep[self._source_code[lo:hi]] = True
        return keep


def _codes(values: list[str | None]) -> tuple[dict[str, int], np.ndarray]:
    """Each value's code (case folded; -1 for none), and the codes in order."""
    known: dict[str, int] = {}
    codes = np.array(
        [-1 if v is None else known.setdefault(v.casefold(), len(known)) for v in values],
        dtype=np.int32,
    )
    return known, codes

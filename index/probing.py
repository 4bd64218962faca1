"""The new generation as calibration reads it (`Probing`): the local `Index`, holding no more of
its mapped files and texts than one probe needs.

Calibration asks some 370 questions of the generation a build is about to publish, in the
build's own process. A plain `Index` keeps in the process's resident memory every page of its
memory-mapped files that a search touched (FAISS's IVF lists, both BM25 indexes' postings and
each text's terms), and the last `TEXT_CACHE` documents it read: at a million passages that took
the build from 1.6 GB to 2.9 GB (#34), and it grows with the corpus. `Probing` gives the mapped
pages back whenever its searches have made more than `RESIDENT_MAPPED` of them resident
(`release_mapped`: they stay in the kernel's page cache, so the next probe maps them again
without reading the disk) and keeps only the last document it read. It finds what an `Index`
finds, to the bit: the same code reads the same bytes.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
from pathlib import Path

import numpy as np

from verbatim.index.local import Index
from verbatim.index.records import Candidates

MAPS = Path("/proc/self/maps")  # Linux; elsewhere `release_mapped` does nothing
STATM = Path("/proc/self/statm")  # Linux; its third field: pages of files mapped, resident
# Mapped pages a `Probing` lets its searches hold before giving them back: a generation whose
# files are smaller (a folder of documents, CounselChat) is never released, and so costs no
# more to calibrate than before; one of 100,000 passages is released every few dozen probes.
RESIDENT_MAPPED = 128 << 20


class Probing(Index):
    """A generation opened for calibration: an `Index` whose searches leave none of its mapped
    pages resident after the next search begins, and whose texts are read, not cached."""

    def __init__(self, path: Path, manifest: dict) -> None:
        super().__init__(path, manifest)
        # Calibration reads its sampled sentences in row order: one document's in a row.
        self._last_text = functools.lru_cache(maxsize=1)(self._read_text)
        self._mapped = mapped_resident()  # libraries and the files the loading read

    def text(self, doc_id: str) -> str:
        return self._last_text(doc_id)

    def candidates(
        self,
        vector: np.ndarray,
        terms: list[str],
        n: int,
        allowed: np.ndarray | None = None,
        exclude: int | None = None,
    ) -> Candidates:
        """`Index.candidates`, once the mapped pages that the probes before made resident are
        given back, if they are more than `RESIDENT_MAPPED`."""
        if mapped_resident() - self._mapped > RESIDENT_MAPPED:
            release_mapped(self.path)
            self._mapped = mapped_resident()
        return super().candidates(vector, terms, n, allowed, exclude)


def release_mapped(folder: Path) -> int:
    """Take the pages of the files under `folder` that this process maps read-only out of its
    resident memory (`madvise(MADV_DONTNEED)`); the next read of one maps it again from the page
    cache, unchanged, as the file is never written through these maps. The bytes of the mappings
    advised; 0 where the kernel lists no mappings (not Linux)."""
    if not MAPS.exists():
        return 0
    prefix = f"{folder.resolve()}/"
    advised = 0
    for line in MAPS.read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or "w" in parts[1] or not parts[5].startswith(prefix):
            continue
        lo, hi = (int(bound, 16) for bound in parts[0].split("-"))
        if _madvise(ctypes.c_void_p(lo), ctypes.c_size_t(hi - lo), mmap.MADV_DONTNEED) == 0:
            advised += hi - lo
    return advised


def mapped_resident() -> int:
    """Bytes of mapped files (and shared memory) this process holds resident; 0 where the
    kernel does not say (not Linux)."""
    if not STATM.exists():
        return 0
    return int(STATM.read_text().split()[2]) * mmap.PAGESIZE


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _madvise(address: ctypes.c_void_p, length: ctypes.c_size_t, advice: int) -> int:
    """libc's madvise: 0, or -1 (the mapping is left as it was)."""
    return int(_libc().madvise(address, length, ctypes.c_int(advice)))

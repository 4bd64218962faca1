"""A trained, empty FAISS IVF index filled on disk, a block of vectors at a time (`write`).

`faiss.write_index` needs every inverted list in memory: float16 codes are 768 bytes a passage,
768 MB at a million passages and 2.3 GB at three million, the one part of an ingest that would
grow with the corpus (#34). `write` computes the same lists in two passes over the vectors,
each holding one block: the first assigns every vector to its list (8 bytes a vector), which
fixes where each list starts in the file; the second encodes each block and writes its codes
and ids into their lists' places. The file is byte for byte what `faiss.write_index` writes for
the index once `index.add` has taken the same vectors in blocks of `BLOCK`
(tests/test_ivf.py), so everything that reads it (`faiss.read_index` with `IO_FLAG_MMAP`) is
unchanged.

FAISS's format, as `faiss/impl/index_write.cpp` writes an `IndexIVFScalarQuantizer`: the
index's header (with `ntotal` at byte 8 and `nprobe` at byte 45), the quantizer, the scalar
quantizer, then the lists: `ilar`, nlist and code size (8 bytes each); the list sizes, `full`
(every size) when more than half the lists hold vectors, else `sprs` (list, size pairs); then
each non-empty list's codes followed by its ids (int64), in list order.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Vectors assigned, encoded and written at a time: `index.add` takes them in the same blocks
# (FAISS's IVF add works in blocks of 65,536 as well), so lists fill in the same order.
BLOCK = 65_536
NTOTAL_AT, NPROBE_AT = 8, 45  # byte offsets in an IVF index's header (little-endian int64)


@dataclass
class _Lists:
    """Where each inverted list lies in the file, and how many of its vectors are written."""

    starts: np.ndarray  # byte offset of each list's codes (its ids follow them)
    sizes: np.ndarray  # vectors in each list
    filled: np.ndarray  # vectors of each list written so far


def write(index: Any, vectors: Any, path: Path) -> None:
    """`index` (a trained, empty `IndexIVFScalarQuantizer`) with every row of `vectors` (a
    matrix or a `Vectors` file) added, written to `path`; `index` itself stays empty."""
    lists = _assign(index, vectors)
    sizes = np.bincount(lists, minlength=index.nlist).astype(np.uint64)
    head = _header(index, len(lists), sizes)
    span = sizes * np.uint64(index.code_size + 8)
    starts = len(head) + np.concatenate([[0], np.cumsum(span)[:-1]]).astype(np.int64)
    with open(path, "wb") as out:
        out.write(head)
        out.truncate(len(head) + int(span.sum()))
    fd = os.open(path, os.O_WRONLY)
    try:
        where = _Lists(starts, sizes, np.zeros(index.nlist, np.int64))
        for at in range(0, len(lists), BLOCK):
            block = np.ascontiguousarray(vectors[at : at + BLOCK], dtype=np.float32)
            _fill(fd, index, block, lists[at : at + BLOCK], at, where)
        os.fsync(fd)
    finally:
        os.close(fd)


def set_nprobe(path: Path, nprobe: int) -> None:
    """Record in the file how many lists a search scans, as `write_index` would have."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, struct.pack("<q", nprobe), NPROBE_AT)
        os.fsync(fd)
    finally:
        os.close(fd)


def _assign(index: Any, vectors: Any) -> np.ndarray:
    """Each vector's list, as `index.add` assigns it: its nearest centroid."""
    lists = np.empty(len(vectors), np.int64)
    for at in range(0, len(vectors), BLOCK):
        block = np.ascontiguousarray(vectors[at : at + BLOCK], dtype=np.float32)
        lists[at : at + len(block)] = index.quantizer.search(block, 1)[1][:, 0]
    if len(lists) and lists.min() < 0:
        raise ValueError("a vector has no nearest centroid (NaN in the passage vectors?)")
    return lists


def _header(index: Any, ntotal: int, sizes: np.ndarray) -> bytes:
    """Everything before the first list's codes: the empty index as FAISS writes it, with
    `ntotal` set and the list sizes in place of its (empty) ones."""
    import faiss

    empty = bytes(faiss.serialize_index(index))
    cut = empty.rindex(b"ilar")  # the inverted lists come last; the quantizer has none
    head = bytearray(empty[:cut])
    struct.pack_into("<q", head, NTOTAL_AT, ntotal)
    head += b"ilar" + struct.pack("<QQ", index.nlist, index.code_size)
    used = np.flatnonzero(sizes)
    if len(used) > index.nlist // 2:
        head += b"full" + struct.pack("<Q", len(sizes)) + sizes.tobytes()
    else:
        pairs = np.stack([used.astype(np.uint64), sizes[used]], axis=1).reshape(-1)
        head += b"sprs" + struct.pack("<Q", len(pairs)) + pairs.tobytes()
    return bytes(head)


def _fill(fd: int, index: Any, block: np.ndarray, lists: np.ndarray, first: int, where: _Lists):
    """Encode `block` (rows `first`...) and write each list's share of it after what that list
    already holds: its codes, then its ids (the rows)."""
    import faiss

    starts, sizes, filled = where.starts, where.sizes, where.filled
    lists = np.ascontiguousarray(lists)
    codes = np.empty((len(block), index.code_size), np.uint8)
    index.encode_vectors(
        len(block), faiss.swig_ptr(block), faiss.swig_ptr(lists), faiss.swig_ptr(codes), False
    )
    order = np.argsort(lists, kind="stable")  # each list's rows in row order, as add keeps them
    for rows in np.split(order, np.flatnonzero(np.diff(lists[order])) + 1):
        to, had = int(lists[rows[0]]), int(filled[lists[rows[0]]])
        code_at = int(starts[to]) + had * index.code_size
        id_at = int(starts[to]) + int(sizes[to]) * index.code_size + had * 8
        os.pwrite(fd, codes[rows].tobytes(), code_at)
        os.pwrite(fd, (rows + first).astype(np.int64).tobytes(), id_at)
        filled[to] += len(rows)

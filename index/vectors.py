"""A generation's vector files (`.npy`, allow_pickle=False): read by row on demand
(`Vectors`, `open_vectors`) and written block by block (`VectorWriter`). An int8 matrix has its
rows' scales in a float32 `.npy` beside it (`scale_path`)."""

from __future__ import annotations

import os
from pathlib import Path

from verbatim.errors import IndexCorrupt

# The dtypes a vector file may hold. Sentence vectors are stored as int8 with a float32 scale
# per row (symmetric: scale = max|x| / 127; a quarter of float32's disk and page cache, cosines
# move by under 1e-3, docs/design.md); float16 and float32 files of older generations are still
# read. Passage vectors stay float32, as FAISS and the exact search read them whole. Rows are
# always handed out as float32, so answering never sees the stored type.
DTYPES = ("float32", "float16", "int8")
INT8_MAX = 127  # symmetric: -127..127, so a row and its negation quantise alike


def scale_path(path: Path) -> Path:
    """Where an int8 vector file keeps its rows' scales (sentences.npy: sentences.scale.npy)."""
    return path.with_name(f"{path.stem}.scale.npy")


def quantise(block):
    """Rows of float vectors as (int8 rows, float32 scale per row), symmetric: a row's largest
    magnitude becomes ±127, and each value is off by at most half its row's scale."""
    import numpy as np

    block = np.asarray(block, dtype=np.float32)
    scale = (np.abs(block).max(axis=1, initial=0.0) / INT8_MAX).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))[:, None]  # an all-zero row stays zeros
    rows = np.clip(np.rint(block / safe), -INT8_MAX, INT8_MAX).astype(np.int8)
    return rows, scale


def dequantise(rows, scale):
    """float32 rows from int8 `rows` and their per-row `scale`."""
    import numpy as np

    return rows.astype(np.float32) * np.asarray(scale, dtype=np.float32)[:, None]


def _header(path: Path) -> tuple[tuple[int, int], str, int]:
    """A `.npy` matrix's shape, dtype name and where its rows begin.

    Raises:
        IndexCorrupt: the file is not a C-ordered matrix of a dtype in `DTYPES`.
    """
    import numpy as np

    with open(path, "rb") as f:
        major, _ = np.lib.format.read_magic(f)
        header = (
            np.lib.format.read_array_header_1_0
            if major == 1
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran, dtype = header(f)
        offset = f.tell()
    if fortran or dtype.name not in DTYPES or dtype.byteorder == ">" or len(shape) != 2:
        raise IndexCorrupt(f"{path}: not a float32, float16 or int8 matrix; run `verbatim ingest`")
    return shape, dtype.name, offset


def stored_dtype(path: Path) -> str:
    """The dtype a vector file holds its rows in ("float32", "float16" or "int8")."""
    return _header(path)[1]


def _scales(path: Path, rows: int):
    """The per-row scales of int8 file `path` (memory-mapped: a question touches a few pages).

    Raises:
        IndexCorrupt: the scale file is missing or does not hold one float32 a row.
    """
    import numpy as np

    try:
        scale = np.load(scale_path(path), mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise IndexCorrupt(
            f"{path}: its row scales are unreadable ({exc}); run `verbatim ingest`"
        ) from exc
    if scale.dtype != np.float32 or scale.shape != (rows,):
        raise IndexCorrupt(f"{path}: its row scales do not match its rows; run `verbatim ingest`")
    return scale


class Vectors:
    """A float32, float16 or int8 `.npy` matrix whose rows are read from disk on demand
    (`os.preadv`), always returned as float32 (int8 rows times their scale: only the rows read
    are dequantised).

    Not memory-mapped: for every row touched the kernel would also map the neighbouring pages
    it holds in its cache, so a server answering over a million passages would show gigabytes
    of resident memory for rows it never reads. A question reads a few hundred rows, one read
    per run of consecutive rows (a passage's sentences are one run). Safe to share between
    threads; `np.asarray(vectors)` reads the whole matrix.
    """

    def __init__(self, path: Path) -> None:
        import numpy as np

        self._fd = -1  # until opened: `close` (also `__del__`) has nothing to close
        self.shape, self.dtype, self._offset = _header(path)
        self._stored = np.dtype(self.dtype)
        self._row_bytes = self.shape[1] * self._stored.itemsize
        self._scale = _scales(path, self.shape[0]) if self.dtype == "int8" else None
        self._fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows):
        """The rows numbered `rows` (an int, a slice, or row numbers in any order), float32."""
        import numpy as np

        if isinstance(rows, slice):
            rows = np.arange(*rows.indices(len(self)))
        wanted = np.asarray(rows, dtype=np.int64)
        flat = wanted.reshape(-1)
        if len(flat) and (flat.min() < 0 or flat.max() >= len(self)):
            raise IndexError(f"row out of range 0..{len(self) - 1}")
        stored = self._read(flat)
        if self._scale is None:
            out = stored.astype(np.float32, copy=False)
        else:
            out = dequantise(stored, self._scale[flat])
        return out[0] if wanted.ndim == 0 else out

    def _read(self, flat):
        """Rows `flat` (in range) as stored: one `preadv` per run of consecutive rows."""
        import numpy as np

        out = np.empty((len(flat), self.shape[1]), dtype=self._stored)
        breaks = np.flatnonzero(np.diff(flat) != 1) + 1
        for lo, hi in zip([0, *breaks], [*breaks, len(flat)], strict=True):
            if lo == hi:
                continue
            buffer = out[lo:hi].data.cast("B")
            offset = self._offset + int(flat[lo]) * self._row_bytes
            if os.preadv(self._fd, [buffer], offset) != len(buffer):
                raise IndexCorrupt("a vector file is shorter than its header says")
        return out

    def __array__(self, dtype=None, copy=None):
        whole = self[0 : len(self)]
        return whole if dtype is None else whole.astype(dtype)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    __del__ = close


MAP_LIMIT = 256 << 20  # vector files up to this size (as float32) are in memory, larger ones read


def open_vectors(path: Path):
    """A vector file for reading float32 rows. Small float32 files are memory-mapped (the
    fastest; whatever it maps stays within the file's size); small float16 and int8 ones are
    read whole into float32 (as much memory as the mapped float32 file would take at most);
    larger files are `Vectors`, which keeps a large index's resident memory to the rows a
    question reads."""
    import numpy as np

    shape, dtype, _ = _header(path)
    if shape[0] * shape[1] * 4 > MAP_LIMIT:
        return Vectors(path)
    if dtype == "float32":  # a plain view: np.memmap's indexing adds a few µs
        return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    stored = np.load(path, allow_pickle=False)
    if dtype == "int8":
        return dequantise(stored, _scales(path, shape[0]))
    return stored.astype(np.float32)


class VectorWriter:
    """A `.npy` matrix written block by block, converted to `dtype` on the way (int8:
    `quantise`d, the scales written to `scale_path` as they come): an ingest never holds a
    million passages' vectors in memory, nor maps them (pages written through a map stay
    resident). The width is taken from the first block, or given to `close` when there was none.

    `rows` is the count the file must reach, or None when it is not known before the end (a
    streamed corpus): the header's shape is written again by `close`. `resume` reopens a file
    that holds `written` rows (more bytes past them are cut off) to go on writing.
    """

    def __init__(self, path: Path, rows: int | None, dtype: str, _resume: tuple | None = None):
        import numpy as np

        if dtype not in DTYPES:
            raise ValueError(f"vector dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        self.path, self.rows, self.dtype = path, rows, np.dtype(dtype)
        self.dim: int | None = None
        self.written = 0
        self._scale_fh = None
        if _resume is not None:
            self.written, self.dim = _resume
            self._fh = _cut(path, HEADER_BYTES + self.written * self.dim * self.dtype.itemsize)
            if self.dtype == np.int8:
                self._scale_fh = _cut(scale_path(path), HEADER_BYTES + self.written * 4)
            return
        self._fh = open(path, "wb")  # noqa: SIM115 (closed by `close`)
        if self.dtype == np.int8:
            self._scale_fh = open(scale_path(path), "wb")  # noqa: SIM115 (closed by `close`)
            write_header(self._scale_fh, np.dtype(np.float32), (rows or 0,))

    @classmethod
    def resume(cls, path: Path, dtype: str, written: int, dim: int | None) -> VectorWriter:
        """Go on writing `path`, of which the first `written` rows of width `dim` are kept."""
        if dim is None:  # nothing was written: start again
            return cls(path, None, dtype)
        return cls(path, None, dtype, _resume=(written, dim))

    def _start(self, dim: int) -> None:
        self.dim = dim
        write_header(self._fh, self.dtype, (self.rows or 0, dim))

    def write(self, block) -> None:
        """Append `block` (rows, dim) as the next rows."""
        import numpy as np

        if self.dim is None:
            self._start(int(block.shape[1]))
        room = self.rows is None or self.written + len(block) <= self.rows
        if block.ndim != 2 or block.shape[1] != self.dim or not room:
            shape = f"{self.rows} x {self.dim}"
            raise ValueError(f"{self.path}: a block of shape {block.shape} does not fit {shape}")
        if self._scale_fh is None:
            self._fh.write(np.ascontiguousarray(block, dtype=self.dtype).data)
        else:
            rows, scale = quantise(block)
            self._fh.write(rows.data)
            self._scale_fh.write(scale.data)
        self.written += len(block)

    def sync(self) -> None:
        """Flush the rows written so far to the disk (before recording them as written)."""
        for fh in (self._fh, self._scale_fh):
            if fh is not None:
                fh.flush()
                os.fsync(fh.fileno())

    def close(self, dim: int) -> None:
        """Finish the file (`dim`: the width when no block was written); every row must be."""
        import numpy as np

        if self.dim is None:
            self._start(dim)
        if self.rows is None:  # the count is known now: the header says it
            self._fh.seek(0)
            write_header(self._fh, self.dtype, (self.written, self.dim or dim))
            if self._scale_fh is not None:
                self._scale_fh.seek(0)
                write_header(self._scale_fh, np.dtype(np.float32), (self.written,))
        self._fh.close()
        if self._scale_fh is not None:
            self._scale_fh.close()
        if self.rows is not None and self.written != self.rows:
            raise ValueError(f"{self.path}: {self.written} of {self.rows} rows written")


def _cut(path: Path, size: int):
    """`path` opened for writing on at byte `size`, anything after it cut off."""
    fh = open(path, "r+b")  # noqa: SIM115 (closed by the writer's `close`)
    fh.truncate(size)
    fh.seek(size)
    return fh


# Every header this module writes takes this many bytes, whatever the shape, so that a file
# whose row count is only known at its end gets its header rewritten in place.
HEADER_BYTES = 128


def write_header(fh, dtype, shape: tuple[int, ...]) -> None:
    """A C-ordered `.npy` (version 1.0) header for `shape` rows of `dtype`, padded to
    `HEADER_BYTES`."""
    import numpy as np

    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
    text = repr(header)
    prefix = np.lib.format.magic(1, 0)
    room = HEADER_BYTES - len(prefix) - 2 - 1
    if len(text) > room:
        raise ValueError(f"a .npy header for shape {shape} is over {HEADER_BYTES} bytes")
    body = (text + " " * (room - len(text)) + "\n").encode("latin1")
    fh.write(prefix + len(body).to_bytes(2, "little") + body)

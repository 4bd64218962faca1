"""A generation's vector files (`.npy`, allow_pickle=False): read by row on demand
(`Vectors`, `open_vectors`) and written block by block (`VectorWriter`)."""

from __future__ import annotations

import os
from pathlib import Path

from verbatim.errors import IndexCorrupt

# The dtypes a vector file may hold. Sentence vectors are stored as float16 (half the disk and
# page cache; cosines move by about 1e-3, answers not at all on the dev sets, docs/design.md);
# passage vectors stay float32, as FAISS and the exact search read them whole. Rows are always
# handed out as float32, so answering never sees the stored type.
DTYPES = ("float32", "float16")


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
        raise IndexCorrupt(f"{path}: not a float32 or float16 matrix; run `verbatim ingest`")
    return shape, dtype.name, offset


def stored_dtype(path: Path) -> str:
    """The dtype a vector file holds its rows in ("float32" or "float16")."""
    return _header(path)[1]


class Vectors:
    """A float32 or float16 `.npy` matrix whose rows are read from disk on demand (`os.preadv`),
    always returned as float32.

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
        out = self._read(flat).astype(np.float32, copy=False)
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
    fastest; whatever it maps stays within the file's size); small float16 ones are read whole
    into float32 (as much memory as the mapped float32 file would take at most); larger files
    are `Vectors`, which keeps a large index's resident memory to the rows a question reads."""
    import numpy as np

    shape, dtype, _ = _header(path)
    if shape[0] * shape[1] * 4 > MAP_LIMIT:
        return Vectors(path)
    if dtype == "float32":  # a plain view: np.memmap's indexing adds a few µs
        return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
    return np.load(path, allow_pickle=False).astype(np.float32)


class VectorWriter:
    """A `.npy` matrix of `rows` rows written block by block, converted to `dtype` on the way:
    an ingest never holds a million passages' vectors in memory, nor maps them (pages written
    through a map stay resident). The width is taken from the first block, or given to `close`
    when there was none.
    """

    def __init__(self, path: Path, rows: int, dtype: str) -> None:
        import numpy as np

        if dtype not in DTYPES:
            raise ValueError(f"vector dtype {dtype!r}; use one of {', '.join(DTYPES)}")
        self.path, self.rows, self.dtype = path, rows, np.dtype(dtype)
        self.dim: int | None = None
        self.written = 0
        self._fh = open(path, "wb")  # noqa: SIM115 (closed by `close`)

    def _start(self, dim: int) -> None:
        import numpy as np

        self.dim = dim
        header = {
            "descr": np.lib.format.dtype_to_descr(self.dtype),
            "fortran_order": False,
            "shape": (self.rows, dim),
        }
        np.lib.format.write_array_header_1_0(self._fh, header)

    def write(self, block) -> None:
        """Append `block` (rows, dim) as the next rows."""
        import numpy as np

        if self.dim is None:
            self._start(int(block.shape[1]))
        if block.ndim != 2 or block.shape[1] != self.dim or self.written + len(block) > self.rows:
            shape = f"{self.rows} x {self.dim}"
            raise ValueError(f"{self.path}: a block of shape {block.shape} does not fit {shape}")
        self._fh.write(np.ascontiguousarray(block, dtype=self.dtype).data)
        self.written += len(block)

    def close(self, dim: int) -> None:
        """Finish the file (`dim`: the width when no block was written); every row must be."""
        if self.dim is None:
            self._start(dim)
        self._fh.close()
        if self.written != self.rows:
            raise ValueError(f"{self.path}: {self.written} of {self.rows} rows written")

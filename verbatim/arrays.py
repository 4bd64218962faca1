"""Array helpers shared by indexing and answering."""

from __future__ import annotations

import numpy as np


def spans(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The numbers lo[0]..hi[0]-1, lo[1]..hi[1]-1, ... in one array (a vectorised concatenation)."""
    sizes = hi - lo
    offsets = np.repeat(lo - np.concatenate([[0], np.cumsum(sizes)[:-1]]), sizes)
    return np.arange(int(sizes.sum()), dtype=np.int64) + offsets

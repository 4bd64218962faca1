"""IVF lists written on disk a block at a time (index/ivf.py): the file FAISS itself writes."""

import faiss
import numpy as np
import pytest

from tests.conftest import FakeEmbedder
from verbatim.index import build as index_build
from verbatim.index import ivf


def _vectors(n: int, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(30, dim))  # clustered, as embeddings are
    vectors = centres[rng.integers(0, 30, n)] + 0.5 * rng.normal(size=(n, dim))
    vectors = vectors.astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture
def small_blocks(monkeypatch):
    """IVF above 500 vectors, 700 vectors a block: a few thousand vectors make several blocks."""
    monkeypatch.setattr(index_build, "EXACT_SEARCH_LIMIT", 500)
    monkeypatch.setattr(ivf, "BLOCK", 700)


@pytest.mark.parametrize("n", [3000, 4321])
def test_the_file_is_faiss_own_byte_for_byte(tmp_path, small_blocks, n):
    vectors = _vectors(n)
    in_memory = index_build._faiss_index(vectors)
    in_memory.nprobe = 3
    faiss.write_index(in_memory, str(tmp_path / "faiss.index"))
    empty = index_build._empty_index(vectors)
    assert empty.ntotal == 0 and empty.nlist == in_memory.nlist > 1
    ivf.write(empty, vectors, tmp_path / "streamed.index")
    ivf.set_nprobe(tmp_path / "streamed.index", 3)
    written = (tmp_path / "streamed.index").read_bytes()
    assert written == (tmp_path / "faiss.index").read_bytes()
    mapped = faiss.read_index(str(tmp_path / "streamed.index"), faiss.IO_FLAG_MMAP)
    assert mapped.ntotal == n and mapped.nprobe == 3
    found = mapped.search(vectors[:50], 1)[1][:, 0]
    assert (found == np.arange(50)).mean() > 0.9  # each vector finds itself
    released = []  # the build measures nprobe on the mapped file, giving its pages back
    queries = vectors[::37]
    probes = index_build._probes(mapped, vectors, queries, lambda: released.append(1))
    assert probes == index_build._probes(in_memory, vectors, queries) and len(released) >= 4


def test_lists_mostly_empty_are_written_sparse_as_faiss_does(tmp_path, small_blocks):
    """FAISS lists sizes as (list, size) pairs when at most half the lists hold vectors."""
    trained_on = _vectors(4000)
    empty = index_build._empty_index(trained_on)
    added = _vectors(40, seed=1)
    in_memory = faiss.clone_index(empty)
    in_memory.add(added)
    faiss.write_index(in_memory, str(tmp_path / "faiss.index"))
    ivf.write(empty, added, tmp_path / "streamed.index")
    assert b"sprs" in (tmp_path / "streamed.index").read_bytes()
    assert (tmp_path / "streamed.index").read_bytes() == (tmp_path / "faiss.index").read_bytes()


def test_a_vector_without_a_list_is_an_error(tmp_path, small_blocks):
    vectors = _vectors(3000)
    empty = index_build._empty_index(vectors)
    vectors[7] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ivf.write(empty, vectors, tmp_path / "streamed.index")


def test_a_built_generation_holds_the_index_faiss_would_write(tmp_path, monkeypatch, settings):
    """Through `build_index`: passages.faiss is the in-memory index of the generation's own
    passage vectors, written by FAISS with the nprobe the build measured."""
    monkeypatch.setattr(index_build, "EXACT_SEARCH_LIMIT", 100)
    monkeypatch.setattr(ivf, "BLOCK", 64)
    from verbatim.engine import ingest_paths
    from verbatim.index import generations
    from verbatim.index.load import where
    from verbatim.index.vectors import Vectors

    folder = tmp_path / "docs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    words = "oil tyre brake kite sail bread flour yeast soil seed rain wind lake boat".split()
    for d in range(8):  # 160 paragraphs of 90 words: each is a passage of its own
        paragraphs = [" ".join(rng.choice(words, 90)) + "." for _ in range(20)]
        (folder / f"d{d}.txt").write_text("\n\n".join(paragraphs))
    report, _ = ingest_paths([folder], settings, FakeEmbedder())
    assert report.passages > 100
    collection = where(settings)
    generation = generations.generations_dir(collection) / generations.current_name(collection)
    vectors = np.asarray(Vectors(generation / "passages.npy")[:], dtype=np.float32)
    in_memory = index_build._faiss_index(vectors)
    mapped = faiss.read_index(str(generation / "passages.faiss"), faiss.IO_FLAG_MMAP)
    in_memory.nprobe = mapped.nprobe
    faiss.write_index(in_memory, str(tmp_path / "faiss.index"))
    assert (generation / "passages.faiss").read_bytes() == (tmp_path / "faiss.index").read_bytes()

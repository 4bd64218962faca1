"""Sentence vectors are stored compactly (int8 now, float16 before: tests/test_int8_vectors.py)
and handed out as float32; the build writes the vector files block by block; an index with
float32 sentence vectors (before the manifest field) is served and reused."""

import json

import numpy as np
import pytest

import verbatim.index.build as index_build
from verbatim.index import SENTENCE_DTYPE, build_index, generations, load_index, sentence_dtype
from verbatim.index import vectors as vector_files
from verbatim.ingest import read_documents


def build(folder, settings, embedder):
    return build_index(read_documents([folder], settings), settings, embedder)


def current(settings):
    return settings.data_dir / "generations" / generations.current_name(settings.data_dir)


def test_float16_rows_are_read_as_float32(tmp_path):
    matrix = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float16)
    np.save(tmp_path / "m.npy", matrix)
    vectors = vector_files.Vectors(tmp_path / "m.npy")
    assert vectors.dtype == "float16" and vectors.shape == (50, 8)
    picks = np.array([7, 3, 4, 5, 49, 0, 0, 12])
    assert vectors[picks].dtype == np.float32
    assert np.array_equal(vectors[picks], matrix[picks].astype(np.float32))
    assert np.array_equal(vectors[3], matrix[3].astype(np.float32))
    assert np.array_equal(np.asarray(vectors), matrix.astype(np.float32))
    vectors.close()
    small = vector_files.open_vectors(tmp_path / "m.npy")  # small: read whole, as float32
    assert isinstance(small, np.ndarray) and small.dtype == np.float32
    assert np.array_equal(small, matrix.astype(np.float32))


def test_other_vector_files_are_refused_with_the_fix(tmp_path):
    np.save(tmp_path / "m.npy", np.zeros((3, 4), dtype=np.float64))
    with pytest.raises(vector_files.IndexCorrupt, match="verbatim ingest"):
        vector_files.Vectors(tmp_path / "m.npy")


def test_the_writer_streams_blocks_into_a_plain_npy(tmp_path):
    matrix = np.random.default_rng(1).normal(size=(10, 4)).astype(np.float32)
    writer = vector_files.VectorWriter(tmp_path / "m.npy", 10, "float16")
    for lo in range(0, 10, 3):
        writer.write(matrix[lo : lo + 3])
    writer.close(4)
    assert np.array_equal(np.load(tmp_path / "m.npy"), matrix.astype(np.float16))
    empty = vector_files.VectorWriter(tmp_path / "e.npy", 0, "float32")
    empty.close(4)
    assert np.load(tmp_path / "e.npy").shape == (0, 4)
    short = vector_files.VectorWriter(tmp_path / "s.npy", 5, "float32")
    short.write(matrix[:2])
    with pytest.raises(ValueError, match="2 of 5 rows"):
        short.close(4)


def test_sentence_vectors_are_stored_as_int8(tiny_corpus, settings, fake_embedder):
    build(tiny_corpus, settings, fake_embedder)
    path = current(settings)
    assert vector_files.stored_dtype(path / "sentences.npy") == "int8" == SENTENCE_DTYPE
    assert vector_files.stored_dtype(path / "passages.npy") == "float32"  # FAISS reads these
    with load_index(settings) as index:
        assert sentence_dtype(index.manifest) == "int8"
        rows = index.sentence_vectors[np.arange(len(index.sent_start))]
        assert rows.dtype == np.float32
        texts = [index.text(index.passage_doc[p])[s:e] for p, s, e in _sentences(index)]
        exact = fake_embedder.encode(texts)
        step = np.abs(exact).max(axis=1, keepdims=True) / vector_files.INT8_MAX
        assert np.all(np.abs(rows - exact) <= step / 2 * (1 + 1e-5))  # int8's rounding, no more


def _sentences(index):
    return zip(index.sent_passage, index.sent_start, index.sent_end, strict=True)


def as_float32_index(settings) -> None:
    """Turn the current generation into one written before float16: float32 sentence
    vectors, no "sentence_dtype" in the manifest, hashes updated."""
    path = current(settings)
    vectors = vector_files.open_vectors(path / "sentences.npy")
    np.save(path / "sentences.npy", np.asarray(vectors, np.float32), allow_pickle=False)
    (path / "sentences.scale.npy").unlink()
    manifest = json.loads((path / "manifest.json").read_text())
    manifest.pop("sentence_dtype")
    manifest["files"].pop("sentences.scale.npy")
    manifest["files"]["sentences.npy"] = generations.sha256_file(path / "sentences.npy")
    (path / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("limit", [None, 0])  # read whole, or row by row
def test_a_float32_index_is_served_and_reused(
    monkeypatch, tiny_corpus, settings, fake_embedder, limit
):
    if limit is not None:
        monkeypatch.setattr(vector_files, "MAP_LIMIT", limit)
    build(tiny_corpus, settings, fake_embedder)
    as_float32_index(settings)
    with load_index(settings) as index:
        assert sentence_dtype(index.manifest) == "float32"
        before = np.asarray(index.sentence_vectors, dtype=np.float32)
        from verbatim.answer import answer

        result = answer("How long should bread dough rise?", index, fake_embedder, settings)
        assert result.quotes or result.near_misses
    again = build(tiny_corpus, settings, fake_embedder)
    assert again.embedded == 0 and again.reused == again.passages
    assert vector_files.stored_dtype(current(settings) / "sentences.npy") == "int8"
    with load_index(settings) as index:  # int8 rows dequantised come back as they were
        assert np.array_equal(np.asarray(index.sentence_vectors), before)


def test_small_blocks_give_the_same_files(monkeypatch, tiny_corpus, settings, fake_embedder):
    """Blocks of a few texts, with new and reused passages mixed in one block: the same
    vectors as one block, and each call of the embedder is one block's new texts."""
    build(tiny_corpus, settings, fake_embedder)
    one_block = _vectors(settings)
    assert fake_embedder.calls == 2  # every passage and sentence at once, then the documents
    monkeypatch.setattr(index_build, "BLOCK_TEXTS", 3)
    small = settings.model_copy(update={"data_dir": settings.data_dir.with_name("small")})
    fake_embedder.calls = 0
    build(tiny_corpus, small, fake_embedder)
    assert fake_embedder.calls > 3
    assert all(np.array_equal(a, b) for a, b in zip(one_block, _vectors(small), strict=True))
    (tiny_corpus / "bread.txt").write_text("Baking Bread at Home\n\nOnly one new sentence.\n")
    fake_embedder.calls = fake_embedder.texts = 0
    report = build(tiny_corpus, small, fake_embedder)
    # the passage and its sentence in one call, and the changed document's own vector
    assert report.embedded == fake_embedder.texts - 1 == 2 and fake_embedder.calls == 2
    assert report.documents_embedded == 1
    monkeypatch.setattr(index_build, "BLOCK_TEXTS", 1 << 16)
    build(tiny_corpus, settings, type(fake_embedder)())
    assert all(
        np.array_equal(a, b) for a, b in zip(_vectors(settings), _vectors(small), strict=True)
    )


def _vectors(settings) -> tuple[np.ndarray, np.ndarray]:
    path = current(settings)
    return np.load(path / "passages.npy"), np.load(path / "sentences.npy")

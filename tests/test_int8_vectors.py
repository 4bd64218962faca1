"""Sentence vectors are stored as int8 with a float32 scale per row (`vectors.quantise`), read
back as float32 within half a scale step; generations with float16 sentence vectors (before
int8) are still served, and a re-ingest reuses them, converting their rows once."""

import json

import numpy as np
import pytest

import verbatim.index.build as index_build
from verbatim.index import SENTENCE_DTYPE, build_index, generations, load_index, sentence_dtype
from verbatim.index import vectors as vector_files
from verbatim.ingest import read_documents

DIM = 384  # MiniLM's width: the bound below depends on it


def build(folder, settings, embedder):
    return build_index(read_documents([folder], settings), settings, embedder)


def current(settings):
    return settings.data_dir / "generations" / generations.current_name(settings.data_dir)


def unit_rows(n: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_int8_round_trip_is_within_half_a_step():
    rows = np.concatenate([unit_rows(500), np.zeros((1, DIM), np.float32)])
    rows[3] = -np.abs(rows[3])  # a row whose largest magnitude is negative
    stored, scale = vector_files.quantise(rows)
    assert stored.dtype == np.int8 and scale.dtype == np.float32 and scale.shape == (501,)
    assert np.abs(stored).max() == vector_files.INT8_MAX and stored.min() >= -127
    back = vector_files.dequantise(stored, scale)
    assert back.dtype == np.float32
    assert np.all(np.abs(back - rows) <= scale[:, None] / 2 * (1 + 1e-5))  # each value
    assert not back[-1].any()  # the all-zero row stays zeros, no division by zero
    queries = unit_rows(50, seed=1)
    moved = np.abs(queries @ back.T - queries @ rows.T)  # what answering sees
    bound = np.sqrt(DIM) * scale / 2  # |q.(x' - x)| <= |x' - x| for a unit q
    assert np.all(moved <= bound[None, :] * (1 + 1e-5))
    assert moved.mean() < 5e-4 and moved.max() < 3e-3
    assert np.array_equal(vector_files.quantise(back)[0], stored)  # converting again: no drift


def test_int8_files_are_written_in_blocks_and_read_by_row_or_whole(tmp_path):
    rows = unit_rows(40)
    writer = vector_files.VectorWriter(tmp_path / "m.npy", 40, "int8")
    for lo in range(0, 40, 7):
        writer.write(rows[lo : lo + 7])
    writer.close(DIM)
    expected = vector_files.dequantise(*vector_files.quantise(rows))
    assert vector_files.stored_dtype(tmp_path / "m.npy") == "int8"
    assert np.load(tmp_path / "m.scale.npy").shape == (40,)
    vectors = vector_files.Vectors(tmp_path / "m.npy")
    picks = np.array([7, 3, 4, 5, 39, 0, 0, 12])
    assert np.array_equal(vectors[picks], expected[picks])
    assert np.array_equal(vectors[5], expected[5])
    assert np.array_equal(np.asarray(vectors), expected)
    vectors.close()
    small = vector_files.open_vectors(tmp_path / "m.npy")  # small: read whole, as float32
    assert isinstance(small, np.ndarray) and small.dtype == np.float32
    assert np.array_equal(small, expected)


def test_an_int8_file_without_its_scales_is_refused_with_the_fix(tmp_path):
    writer = vector_files.VectorWriter(tmp_path / "m.npy", 3, "int8")
    writer.write(unit_rows(3))
    writer.close(DIM)
    np.save(tmp_path / "m.scale.npy", np.ones(2, dtype=np.float32))  # one row short
    with pytest.raises(vector_files.IndexCorrupt, match="verbatim ingest"):
        vector_files.Vectors(tmp_path / "m.npy")
    (tmp_path / "m.scale.npy").unlink()
    with pytest.raises(vector_files.IndexCorrupt, match="verbatim ingest"):
        vector_files.open_vectors(tmp_path / "m.npy")


def test_the_manifest_records_int8_and_hashes_the_scales(tiny_corpus, settings, fake_embedder):
    build(tiny_corpus, settings, fake_embedder)
    path = current(settings)
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["sentence_dtype"] == "int8" == SENTENCE_DTYPE
    assert vector_files.stored_dtype(path / "sentences.npy") == "int8"
    assert {"sentences.npy", "sentences.scale.npy"} <= set(manifest["files"])


@pytest.mark.parametrize("limit", [None, 0])  # read whole, or row by row
def test_a_float16_index_is_served_and_reused_as_int8(
    monkeypatch, tiny_corpus, settings, fake_embedder, limit
):
    from verbatim.answer import answer

    if limit is not None:
        monkeypatch.setattr(vector_files, "MAP_LIMIT", limit)
    with monkeypatch.context() as before_int8:
        before_int8.setattr(index_build, "SENTENCE_DTYPE", "float16")
        build(tiny_corpus, settings, fake_embedder)
    assert vector_files.stored_dtype(current(settings) / "sentences.npy") == "float16"
    question = "How long should bread dough rise?"
    with load_index(settings) as index:
        assert sentence_dtype(index.manifest) == "float16"
        old = np.asarray(index.sentence_vectors, dtype=np.float32)
        served = _said(answer(question, index, fake_embedder, settings))
        assert served
    fake_embedder.texts = 0
    again = build(tiny_corpus, settings, fake_embedder)
    assert again.embedded == fake_embedder.texts == 0 and again.reused == again.passages
    assert vector_files.stored_dtype(current(settings) / "sentences.npy") == "int8"
    with load_index(settings) as index:
        assert sentence_dtype(index.manifest) == "int8"
        new = np.asarray(index.sentence_vectors, dtype=np.float32)
        step = np.abs(old).max(axis=1, keepdims=True) / vector_files.INT8_MAX
        assert np.all(np.abs(new - old) <= step / 2 * (1 + 1e-5))
        # the first quote stays; the fake embedder's unrelated sentences score near-ties below
        assert _said(answer(question, index, fake_embedder, settings))[0] == served[0]


def _said(result) -> list[str]:
    """The quotes of an answer, or of its near misses when it abstained."""
    return [q.text for q in result.quotes or result.near_misses]

"""Ingest on a local Ray cluster (`ray.init(num_cpus=2)`) equals a plain ingest: the same
documents, passages, offsets and ids, and the model's own vectors."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.builders import INFO, TWO_PAGES, make_docx, make_epub, make_pdf
from verbatim.index import ModelEmbedder, load_index
from verbatim.ingest import read_documents

ray = pytest.importorskip("ray", reason='Ray is an extra: pip install ".[ray]"')
pytestmark = pytest.mark.slow
FORMATS = Path(__file__).resolve().parent / "fixtures" / "formats"


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def mixed(tmp_path, tiny_corpus) -> list[Path]:
    """Two folders: the tiny corpus (md, txt, html) and every other format, a broken PDF too."""
    other = tmp_path / "other"
    shutil.copytree(FORMATS, other)
    (other / "guide.pdf").write_bytes(make_pdf(TWO_PAGES, INFO))
    (other / "broken.pdf").write_bytes(make_pdf(TWO_PAGES, INFO)[:300])
    make_docx(other / "notes.docx")
    make_epub(other / "book.epub")
    return [tiny_corpus, other]


def test_reading_on_ray_equals_reading_here(cluster, mixed, settings):
    from verbatim.ingest.cluster import read_on_ray

    here = read_documents(mixed, settings)
    there = read_documents(mixed, settings, reader=read_on_ray)
    assert len(here.documents) >= 10 and here.skipped  # every format, and the broken PDF
    assert there.documents == here.documents
    assert there.passages == here.passages
    assert there.skipped == here.skipped and there.formats == here.formats


def test_embedding_on_ray_gives_the_models_vectors(cluster, model_cache):
    from verbatim.index.cluster import RayEmbedder

    texts = [f"Sentence number {i} says {'more ' * (i % 13)}about kites." for i in range(300)]
    options = {"model": "all-MiniLM-L6-v2", "cache_dir": model_cache}
    remote = RayEmbedder(workers=2, **options)
    assert remote.workers == 2 and remote.gpus == 0
    vectors = remote.encode(texts)
    plain = ModelEmbedder(**options).encode(texts)
    assert vectors.shape == plain.shape == (300, 384)
    assert np.allclose(vectors, plain, atol=1e-5)
    assert remote.encode([]).shape == (0, 384)


def test_ingest_on_ray_equals_a_plain_ingest(cluster, mixed, settings, model_cache):
    from verbatim.engine import ingest_on_ray, ingest_paths

    real = settings.model_copy(update={"model": "all-MiniLM-L6-v2"})
    plain_settings = real.model_copy(update={"data_dir": settings.data_dir / "plain"})
    ingest_paths(mixed, plain_settings, ModelEmbedder("all-MiniLM-L6-v2", cache_dir=model_cache))
    ray_settings = real.model_copy(update={"data_dir": settings.data_dir / "ray"})
    shutil.copytree(model_cache, ray_settings.data_dir / "models")  # the export, made once
    report, skipped = ingest_on_ray(mixed, ray_settings, workers=2)
    assert skipped and report.passages > 0
    with load_index(plain_settings) as a, load_index(ray_settings) as b:
        assert a.passage_ids == b.passage_ids and a.passage_doc == b.passage_doc
        assert np.array_equal(a.passage_start, b.passage_start)
        assert np.array_equal(a.sent_start, b.sent_start)
        assert np.array_equal(a.sent_end, b.sent_end)
        assert a.manifest["corpus_hash"] == b.manifest["corpus_hash"]
        assert np.allclose(np.asarray(a.passage_vectors), np.asarray(b.passage_vectors), atol=1e-5)
        assert np.allclose(
            np.asarray(a.sentence_vectors), np.asarray(b.sentence_vectors), atol=1e-5
        )

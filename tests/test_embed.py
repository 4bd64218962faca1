"""The embedding backends: ONNX gives torch's vectors, int8 stays close, exports are cached."""

import logging

import numpy as np
import pytest

from verbatim.errors import IndexWriteFailed, ModelUnsupported
from verbatim.index import ModelEmbedder

TEXTS = [
    "How do I convince my husband to go to couples therapy?",
    "Tomatoes need full sun.",
    "",
    "A much longer sentence " * 40,  # longer than the model's 256 tokens: truncated alike
]


@pytest.mark.slow
def test_onnx_gives_the_same_vectors_as_torch(real_embedder):
    torch = ModelEmbedder("all-MiniLM-L6-v2", backend="torch").encode(TEXTS)
    onnx = real_embedder.encode(TEXTS)
    assert onnx.shape == torch.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1, atol=1e-5)
    assert (onnx * torch).sum(axis=1).min() > 0.9999
    # ... from a fused graph: one Attention node per layer (a plain export has none).
    import onnx as onnx_format

    [exported] = real_embedder.cache_dir.glob("*/model.onnx")
    nodes = [n.op_type for n in onnx_format.load(str(exported)).graph.node]
    assert nodes.count("Attention") == 6 and "Softmax" not in nodes


@pytest.mark.slow
def test_int8_stays_close_and_its_export_is_reused(real_embedder, model_cache):
    root = logging.getLogger()
    logging_before = (root.level, list(root.handlers))
    int8 = ModelEmbedder("all-MiniLM-L6-v2", backend="onnx-int8", cache_dir=model_cache)
    vectors = int8.encode(TEXTS)
    # Quantising imports onnxruntime.quantization, which calls logging.basicConfig(INFO).
    assert (root.level, list(root.handlers)) == logging_before
    cosine = (vectors * real_embedder.encode(TEXTS)).sum(axis=1)
    assert cosine.min() > 0.95 and cosine.mean() > 0.98
    [exported] = model_cache.glob("*/model-int8.onnx")
    assert b"QAttention" in exported.read_bytes()  # the fused graph, quantised
    made = exported.stat().st_mtime_ns
    again = ModelEmbedder("all-MiniLM-L6-v2", backend="onnx-int8", cache_dir=model_cache)
    assert np.array_equal(again.encode(TEXTS), vectors)  # deterministic, and not re-exported
    assert exported.stat().st_mtime_ns == made


@pytest.mark.slow
def test_batches_sorted_by_length_keep_the_input_order(real_embedder):
    small = ModelEmbedder("all-MiniLM-L6-v2", batch_size=2, cache_dir=real_embedder.cache_dir)
    assert np.allclose(small.encode(TEXTS), real_embedder.encode(TEXTS), atol=1e-5)
    assert small.encode([]).shape == (0, 384)


def test_unknown_backend_and_unwritable_cache_name_the_fix(tmp_path):
    with pytest.raises(ModelUnsupported, match="onnx-int8"):
        ModelEmbedder("all-MiniLM-L6-v2", backend="tensorflow")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(IndexWriteFailed, match="VERBATIM_BACKEND=torch"):
        ModelEmbedder("all-MiniLM-L6-v2", cache_dir=blocker / "models").encode(["hi"])

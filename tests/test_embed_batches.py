"""ModelEmbedder's batches: distinct texts once, sorted and cut by a token budget, padded per
batch; the vectors are the texts' own, in the caller's order (the real model: `slow`)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from verbatim.index import ModelEmbedder
from verbatim.index.embed import TOKENS_PER_TEXT, _batches, _distinct, _Onnx

ROOT = Path(__file__).resolve().parent.parent


class FakeRunner:
    """Items are word lists, a vector is a hash of the words; records every batch it ran."""

    per_token = True

    def __init__(self) -> None:
        self.batches: list[list[list[str]]] = []

    def tokens(self, texts: list[str]) -> list[list[str]]:
        return [["[CLS]", *text.split(), "[SEP]"] for text in texts]

    def __call__(self, batch: list[list[str]]) -> np.ndarray:
        self.batches.append(batch)
        out = np.zeros((len(batch), 8), dtype=np.float32)
        for row, words in enumerate(batch):
            for word in words:
                out[row, hash(word) % 8] += 1.0
        return out


def fake(batch_size: int = 4, per_token: bool = True) -> tuple[ModelEmbedder, FakeRunner]:
    embedder = ModelEmbedder("fake", batch_size=batch_size)
    runner = FakeRunner()
    runner.per_token = per_token
    embedder._run = runner
    return embedder, runner


def test_batches_hold_at_most_the_token_budget_padded_and_cover_every_text_once():
    lengths = np.array([3, 700, 40, 40, 2, 9, 128, 128, 5, 1, 300, 7] * 5)
    batches = _batches(lengths, rows=4, tokens=512)
    assert sorted(np.concatenate(batches).tolist()) == list(range(len(lengths)))
    flat = lengths[np.concatenate(batches)]
    assert (np.diff(flat) <= 0).all()  # longest first, so each batch's first is its longest
    for rows in batches:
        assert len(rows) == 1 or len(rows) * lengths[rows].max() <= 512
    assert max(len(rows) for rows in batches) > 4  # short texts go many to a call
    fixed = _batches(lengths, rows=4, tokens=None)
    assert [len(rows) for rows in fixed] == [4] * 15


def test_repeated_texts_run_once_and_every_text_gets_its_vector_in_order():
    texts = ["b c", "a", "b c", "d e f g", "a", "", "b c"]
    unique, inverse = _distinct(texts)
    assert unique == ["b c", "a", "d e f g", ""]
    assert [unique[i] for i in inverse] == texts
    embedder, runner = fake()
    vectors = embedder.encode(texts)
    ran = [" ".join(words[1:-1]) for batch in runner.batches for words in batch]
    assert sorted(ran) == sorted(unique)
    alone = np.stack([fake()[0].encode([t])[0] for t in texts])
    assert vectors.dtype == np.float32 and vectors.shape == (len(texts), 8)
    assert np.allclose(vectors, alone, atol=1e-6)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-6)


def test_a_call_carries_batch_size_times_128_tokens_and_torch_batch_size_texts():
    texts = [" ".join(["w"] * n) + f" x{i}" for i, n in enumerate([2, 300, 5, 60, 2, 1] * 40)]
    embedder, runner = fake(batch_size=4)
    embedder.encode(texts)
    budget = 4 * TOKENS_PER_TEXT
    assert all(len(b) == 1 or len(b) * max(map(len, b)) <= budget for b in runner.batches)
    assert len(runner.batches) < len(texts) / 4  # fewer calls than 4 texts each
    embedder, runner = fake(batch_size=4, per_token=False)
    embedder.encode(texts)
    assert [len(b) for b in runner.batches] == [4] * (len(texts) // 4)


class FakeSession:
    """Token states that depend on the token alone, so that mean pooling of a padded batch
    must give the unpadded mean; it checks the mask matches the padding."""

    def get_inputs(self):
        return [type("Input", (), {"name": n}) for n in ("input_ids", "attention_mask")]

    def run(self, outputs, feed):
        ids, mask = feed["input_ids"], feed["attention_mask"]
        assert ((ids == 0) == (mask == 0)).all()
        return [np.stack([np.sin(ids), np.cos(ids), ids / 1e3], axis=-1).astype(np.float32)]


def test_a_batch_is_padded_to_its_longest_and_pooled_over_its_own_tokens():
    run = _Onnx(FakeSession(), tokenizer=None, mode="mean")
    batch = [[101, 7, 8, 9, 102], [101, 102], [101, 5, 102]]
    together = run(batch)
    alone = np.concatenate([run([ids]) for ids in batch])
    assert together.shape == (3, 3) and np.allclose(together, alone, atol=1e-6)
    assert np.allclose(_Onnx(FakeSession(), None, "cls")(batch)[:, 0], np.sin(101))


def corpus_texts() -> list[str]:
    """The bundled corpus as ingest sees it, roughly: paragraphs and their sentences, with
    repeats and a text past the model's 256 tokens."""
    text = "\n\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "corpus").glob("*")))
    paragraphs = [p.strip() for p in text.split("\n\n") if len(p.strip()) > 40][:40]
    sentences = [s for p in paragraphs for s in re.split(r"(?<=[.!?])\s+", p) if s][:120]
    return [*paragraphs, *sentences, sentences[0], paragraphs[0], " ".join(paragraphs), ""]


def old_encode(run: _Onnx, texts: list[str]) -> np.ndarray:
    """Today's loop before token budgets: 64 texts by characters, tokenizer padding."""
    tokenizer = run.tokenizer.__class__.from_str(run.tokenizer.to_str())
    tokenizer.enable_padding()
    order = np.argsort([-len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for at in range(0, len(texts), 64):
        rows = order[at : at + 64]
        encoded = tokenizer.encode_batch([texts[i] for i in rows])
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = run.session.run(None, feed)[0]
        out[rows] = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


@pytest.mark.slow
def test_token_budget_batches_give_todays_vectors(real_embedder):
    texts = corpus_texts()
    vectors = real_embedder.encode(texts)
    run = real_embedder.load()
    assert isinstance(run, _Onnx)
    assert max(len(ids) for ids in run.tokens(texts)) == 256  # truncated, not padded to 128
    assert 1 - (vectors * old_encode(run, texts)).sum(axis=1).min() < 1e-5
    alone = np.concatenate([real_embedder.encode([t]) for t in texts[::7]])
    assert 1 - (vectors[::7] * alone).sum(axis=1).min() < 1e-5

"""Deterministic evaluation of grounding, quoting, retrieval and abstention. No model judges.

Public entry point: `evaluate(questions, engine, offtopic)` -> `Report`. Readers for the eval
format (`read_questions`) and the BEIR layout (`read_beir`); `corpus_engine` builds (and caches
by content) a separate index for a benchmark corpus; `cross_validate` gives a report's K-fold
figures by question (`folds.py`), and `worst_lines` the questions answered worst.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import json
import shutil
import textwrap
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from verbatim.errors import VerbatimError
from verbatim.eval import dense, folds
from verbatim.eval.metrics import (
    coverage_precision,
    mrr_at,
    ndcg_at,
    percentile,
    quote_hit,
    recall_at,
)
from verbatim.settings import Settings

if TYPE_CHECKING:
    from verbatim.answer import Retrieval
    from verbatim.engine import Engine
    from verbatim.index import Store
    from verbatim.records import Answer, Embedder, Quote

SHOWN = 10  # quotes asked for per question: the documents of the first ten are ranked

# What an index depends on, as (package, file pattern): a change to any of these invalidates
# cached eval indexes. The abstention thresholds stored with an index come from asking it
# questions (calibrate.py asks through answer.retrieve_by_vector), so the answering code is part
# of the index too. Packages, not source folders: an installed copy has no source tree.
PIPELINE = (
    ("verbatim.ingest", "*.py"),
    ("verbatim.index", "*.py"),
    ("verbatim", "*.py"),
    ("verbatim", "offtopic.txt"),
)


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    relevant: list[str] = field(default_factory=list)
    answerable: bool = True
    not_answers: list[str] = field(default_factory=list)  # quotes marked unhelpful (feedback)


@dataclass
class Result:
    id: str
    question: str
    kind: str  # "answerable", "unanswerable" or "offtopic"
    abstained: bool
    evidence: float
    ranked: list[str]
    relevant: list[str]
    quotes: list[dict]
    hit1: bool | None
    hit3: bool | None
    checked: int  # quotes and near misses checked against the store
    grounded: int
    attributed: int
    letters: int
    latency_ms: float
    first_relevant: int | None = None  # shown-order rank (1-based) of the first relevant document
    first_quote: str | None = None
    unhelpful1: bool | None = None  # the first quote is one marked unhelpful (not_answers)
    first_right: int | None = None  # rank (1-based) of the first quote holding a gold answer
    # (of the first from a relevant document when the question has no gold strings)
    refused: str | None = None  # "too long": over the user's `max_question_chars`, not asked
    dense_ranked: list[str] | None = None  # the whole-document dense baseline's first 10


@dataclass
class Report:
    metrics: dict
    curve: list[tuple[float, float, float]]
    results: list[Result]
    folds: dict | None = None  # `cross_validate`'s figures, once computed

    def to_json(self) -> dict:
        out = {
            "metrics": self.metrics,
            "curve": self.curve,
            "results": [asdict(r) for r in self.results],
        }
        if self.folds is not None:
            out["folds"] = self.folds
        return out


def read_questions(path: Path) -> list[Question]:
    """Questions in the eval format: one JSON object a line (see the benchmarks README)."""
    out = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(
                Question(
                    id=str(row["id"]),
                    question=row["question"],
                    answers=list(row.get("answers", [])),
                    relevant=list(row.get("relevant", [])),
                    answerable=bool(row.get("answerable", True)),
                    not_answers=list(row.get("not_answers", [])),
                )
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise VerbatimError(f"{path}:{lineno} is not an eval question ({exc})") from None
    return out


def read_beir(folder: Path, split: str | None = None) -> list[Question]:
    """Questions from a BEIR folder: `queries.jsonl` plus `qrels/<split>.tsv`."""
    folder = Path(folder)
    qrels = sorted((folder / "qrels").glob(f"{split or '*'}.tsv"))
    if not qrels:
        raise VerbatimError(f"{folder}/qrels has no .tsv file; is this a BEIR folder?")
    relevant: dict[str, list[str]] = {}
    with open(qrels[0], encoding="utf-8", newline="") as fh:
        for row in csv.reader(fh, delimiter="\t"):
            if len(row) < 3 or not row[2].lstrip("-").isdigit():
                continue  # header line
            if int(row[2]) > 0:
                relevant.setdefault(row[0], []).append(row[1])
    out = []
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            qid = str(row["_id"])
            if qid in relevant:
                out.append(Question(qid, row["text"], [], relevant[qid], True))
    return out


def load_questions(path: Path) -> tuple[list[Question], Path | None]:
    """Questions from an eval-format file or a BEIR folder, and the BEIR corpus if any."""
    path = Path(path)
    if path.is_dir():
        return read_beir(path), path / "corpus.jsonl"
    return read_questions(path), None


def pipeline_files() -> list[Path]:
    """The files `PIPELINE` names, found where the packages were imported from."""
    files: list[Path] = []
    for package, pattern in PIPELINE:
        folder = Path(importlib.import_module(package).__path__[0]).resolve()
        files += sorted(folder.glob(pattern))
    return files


def _vectors_key(corpus: Path, settings: Settings) -> str:
    """What the stored vectors depend on: the corpus bytes and the model (onnx and torch give
    the same vectors), not the pipeline's code."""
    int8 = settings.backend == "onnx-int8"
    digest = hashlib.sha256(f"{settings.model}\0{int8}\0{settings.passage_chars}".encode())
    files = [corpus] if corpus.is_file() else sorted(p for p in corpus.rglob("*") if p.is_file())
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def _cache_key(corpus: Path, settings: Settings) -> str:
    """The index's whole key: its vectors' key and the pipeline's source."""
    digest = hashlib.sha256(_vectors_key(corpus, settings).encode())
    for path in pipeline_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:20]


def _seed_vectors(own: Path, key: str) -> None:
    """Start the new cache directory `own` from the newest other one whose vectors have the same
    key: its current generation is copied in without its calibration, so the ingest that
    follows reuses every unchanged passage's vectors and calibrates afresh with this code.
    A change to the answering code then costs a re-read and a calibration, not a re-embed."""
    from verbatim.index import generations

    stamps = [p for p in own.parent.glob("*/VECTORS") if p.read_text(encoding="utf-8") == key]
    for stamp in sorted(stamps, key=lambda p: p.stat().st_mtime, reverse=True):
        name = generations.current_name(stamp.parent)
        source = generations.generations_dir(stamp.parent) / (name or "-")
        if not name or not (source / generations.MANIFEST).exists():
            continue
        target = generations.generations_dir(own) / name
        shutil.copytree(source, target)
        manifest = generations.read_manifest(target)
        manifest.pop("calibration", None)
        (target / generations.MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
        (own / "CURRENT").write_text(name + "\n", encoding="utf-8")
        return


def corpus_engine(corpus: Path, settings: Settings, embedder: Embedder | None = None) -> Engine:
    """An engine over `corpus`, indexed into its own cached data directory.

    The cache key covers the corpus bytes, the model and the pipeline's source, so a second
    run on the same data starts in seconds and a change to the code rebuilds, reusing the
    vectors of an earlier build of the same corpus (`_seed_vectors`).
    """
    from verbatim.engine import ingest_paths, make_embedder, open_engine

    embedder = embedder or make_embedder(settings)  # one model cache for every eval corpus
    own = settings.model_copy(
        update={"data_dir": settings.data_dir / "eval" / _cache_key(Path(corpus), settings)}
    )
    try:
        return open_engine(own, embedder)
    except VerbatimError:
        vectors = _vectors_key(Path(corpus), settings)
        if not (own.data_dir / "CURRENT").exists():
            own.data_dir.mkdir(parents=True, exist_ok=True)
            _seed_vectors(own.data_dir, vectors)
        ingest_paths([Path(corpus)], own, embedder)
        (own.data_dir / "VECTORS").write_text(vectors, encoding="utf-8")
        return open_engine(own, embedder)


def _check(index: Store, quote: Quote) -> tuple[bool, bool]:
    """(grounded, attributed) for one quote, against the stored document."""
    doc = index.document(quote.doc_id)
    grounded = doc.text[quote.start : quote.end] == quote.text and (
        quote.content_hash == doc.content_hash
    )
    url_ok = doc.url or ""
    attributed = (
        bool(quote.title)
        and quote.title == doc.title
        and quote.author == doc.author
        and quote.date == doc.date
        and quote.url == doc.url
        and bool(quote.role)
        and (quote.link is not None) == url_ok.lower().startswith(("http://", "https://"))
    )
    return grounded, attributed


def evaluate(
    questions: list[Question],
    engine: Engine,
    offtopic: Sequence[Question] = (),
    progress: bool = True,
    baseline: bool = True,
    baseline_cache: Path | None = None,
) -> Report:
    """Ask every question and compute the metrics defined in eval/README.md.

    Every question is asked under the engine's own settings, as a user asks it: one longer than
    `max_question_chars` is refused (`Result.refused`), scored as no answer and counted.

    Args:
        baseline: also rank the documents by the whole-document dense baseline (`dense.py`),
            whose document vectors are kept in `baseline_cache` when given.
    """
    from tqdm import tqdm

    from verbatim.answer import compose, retrieve

    index, settings = engine.answering, engine.settings
    tagged = [(q, "answerable" if q.answerable else "unanswerable") for q in questions]
    tagged += [(q, "offtopic") for q in offtopic]
    results, vectors = [], {}
    for q, kind in tqdm(tagged, disable=not progress, desc="questions", unit="q"):
        if len(q.question) > settings.max_question_chars:
            results.append(_refused(q, kind))
            continue
        began = time.perf_counter()
        found = retrieve(q.question, index, engine.embedder, settings)
        ans = compose(found, index, settings, k=SHOWN)
        latency = (time.perf_counter() - began) * 1000
        results.append(_result(q, kind, found, ans, index, latency))
        vectors[id(results[-1])] = found.vector
    if baseline:
        _rank_dense(results, vectors, engine, baseline_cache)
    return _report(results)


def _refused(q: Question, kind: str) -> Result:
    """The record of a question the user's limit refuses: no answer, no quote."""
    gold = kind == "answerable" and bool(q.answers)
    return Result(
        id=q.id,
        question=q.question,
        kind=kind,
        abstained=True,
        evidence=0.0,
        ranked=[],
        relevant=list(q.relevant),
        quotes=[],
        hit1=False if gold else None,
        hit3=False if gold else None,
        checked=0,
        grounded=0,
        attributed=0,
        letters=0,
        latency_ms=0.0,
        unhelpful1=False if q.not_answers else None,
        refused="too long",
    )


def _rank_dense(results: list[Result], vectors: dict, engine: Engine, cache: Path | None) -> None:
    """Set `dense_ranked` on every answerable question with relevant documents. A question the
    limit refused is embedded here, as written: the baseline has no limit of its own."""
    scored = [r for r in results if r.kind == "answerable" and r.relevant]
    if not scored:
        return
    ids, docs = dense.document_vectors(engine.answering, engine.embedder, engine.settings, cache)
    missing = [r for r in scored if id(r) not in vectors]
    if missing:
        encoded = engine.embedder.encode([r.question for r in missing], progress=False)
        vectors.update({id(r): v for r, v in zip(missing, encoded, strict=True)})
    for r in scored:
        r.dense_ranked = dense.rank(ids, docs, vectors[id(r)])


def _result(
    q: Question, kind: str, found: Retrieval, ans: Answer, index: Store, latency: float
) -> Result:
    """One question's record: what was answered, and each quote checked against the store."""
    checks = [_check(index, quote) for quote in ans.quotes + ans.near_misses]
    texts = [quote.text for quote in ans.quotes]
    gold = kind == "answerable" and bool(q.answers)
    right = (
        [quote_hit([t], q.answers, 1) for t in texts]
        if gold
        else [x.doc_id in q.relevant for x in ans.quotes]
    )
    return Result(
        id=q.id,
        question=q.question,
        kind=kind,
        abstained=ans.abstained,
        evidence=round(found.evidence, 4),
        ranked=found.documents(index, 10),
        relevant=list(q.relevant),
        quotes=[
            {
                "doc_id": x.doc_id,
                "start": x.start,
                "end": x.end,
                "text": x.text,
                "role": x.role,
                "kind": quote_kind(x),
            }
            for x in ans.quotes
        ],
        hit1=quote_hit(texts, q.answers, 1) if gold else None,
        hit3=quote_hit(texts, q.answers, 3) if gold else None,
        checked=len(checks),
        grounded=sum(g for g, _ in checks),
        attributed=sum(a for _, a in checks),
        letters=sum(x.role == "letter" for x in ans.quotes),
        latency_ms=round(latency, 2),
        first_relevant=next(
            (rank for rank, doc in enumerate(shown(ans.quotes), 1) if doc in q.relevant), None
        ),
        first_quote=ans.quotes[0].text if ans.quotes else None,
        unhelpful1=quote_hit(texts, q.not_answers, 1) if q.not_answers else None,
        first_right=next((rank for rank, ok in enumerate(right, 1) if ok), None),
    )


def quote_kind(quote: Quote) -> str:
    """The kind of block a quote comes from (`Quote.kind`: "prose", "code", "item", "row",
    "term", "definition"), with "lead-in + " before it when the quote begins with the
    sentence that introduces that block."""
    return ("lead-in + " if quote.lead_in else "") + quote.kind


def shown(quotes: list) -> list[str]:
    """Document ids in the order a person sees them: each at its first quote."""
    return list(dict.fromkeys(q["doc_id"] if isinstance(q, dict) else q.doc_id for q in quotes))


def _ranking(results: list[Result], order) -> dict:
    """Document recall@1/5/10, MRR@10 and nDCG@10 of the rankings `order(result)` gives."""
    pairs = [(order(r), set(r.relevant)) for r in results]
    return {
        "recall@1": _mean(recall_at(ranked, rel, 1) for ranked, rel in pairs),
        "recall@5": _mean(recall_at(ranked, rel, 5) for ranked, rel in pairs),
        "recall@10": _mean(recall_at(ranked, rel, 10) for ranked, rel in pairs),
        "mrr@10": _mean(mrr_at(ranked, rel, 10) for ranked, rel in pairs),
        "ndcg@10": _mean(ndcg_at(ranked, rel, 10) for ranked, rel in pairs),
    }


def worst(report: Report, n: int) -> list[Result]:
    """The `n` answerable questions answered worst, as shown: by nDCG@10 of the documents shown,
    then by whether the first quote holds a gold answer, then by the first relevant's rank."""
    answerable = [r for r in report.results if r.kind == "answerable"]

    def key(r: Result) -> tuple:
        ndcg = ndcg_at(shown(r.quotes), set(r.relevant), 10) if r.relevant else 1.0
        return (ndcg, r.hit1 is not False, -(r.first_relevant or SHOWN + 1))

    return sorted(answerable, key=key)[:n]


def _mean(values) -> float | None:
    values = list(values)
    return round(sum(values) / len(values), 4) if values else None


def _share(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _dense_figures(ranked: list[Result]) -> dict | None:
    """The whole-document dense baseline's nDCG@10, recall@1/10 and source@1 (its first
    document is relevant), over the questions it ranked."""
    scored = [r for r in ranked if r.dense_ranked is not None]
    if not scored:
        return None
    figures = _ranking(scored, lambda r: r.dense_ranked)
    return {
        "ndcg@10": figures["ndcg@10"],
        "recall@1": figures["recall@1"],
        "recall@10": figures["recall@10"],
        "source@1": _mean(any(d in r.relevant for d in (r.dense_ranked or [])[:1]) for r in scored),
    }


def _report(results: list[Result]) -> Report:
    answerable = [r for r in results if r.kind == "answerable"]
    with_gold = [r for r in answerable if r.hit1 is not None]
    ranked = [r for r in answerable if r.relevant]
    unanswerable = [r for r in results if r.kind == "unanswerable"]
    offtopic = [r for r in results if r.kind == "offtopic"]
    quotes = sum(len(r.quotes) for r in results)
    checked = sum(r.checked for r in results)
    latencies = [r.latency_ms for r in results if r.refused is None]
    metrics = {
        "questions": {
            "answerable": len(answerable),
            "unanswerable": len(unanswerable),
            "offtopic": len(offtopic),
            "with_gold_answers": len(with_gold),
            "refused (too long)": sum(r.refused == "too long" for r in results),
        },
        "grounding": {
            "quotes_checked": checked,
            "exact": _share(sum(r.grounded for r in results), checked),
            "attribution_complete": _share(sum(r.attributed for r in results), checked),
            "letter_as_advice": _share(sum(r.letters for r in results), quotes) or 0.0,
        },
        "quotes": {
            "hit@1": _mean(r.hit1 for r in with_gold),
            "hit@3": _mean(r.hit3 for r in with_gold),
            "source@1": _mean(
                bool(r.quotes) and r.quotes[0]["doc_id"] in r.relevant for r in ranked
            ),
            "unhelpful@1": _mean(r.unhelpful1 for r in results if r.unhelpful1 is not None),
        },
        "retrieval": _ranking(ranked, lambda r: shown(r.quotes)),
        "retrieval_order": _ranking(ranked, lambda r: r.ranked),
        "abstention": {
            "unanswerable_abstained": _mean(r.abstained for r in unanswerable),
            "offtopic_abstained": _mean(r.abstained for r in offtopic),
            "must_abstain": _mean(r.abstained for r in unanswerable + offtopic),
            "false_abstained": _mean(r.abstained for r in answerable),
        },
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 2),
            "p95": round(percentile(latencies, 95), 2),
        },
    }
    baseline = _dense_figures(ranked)
    if baseline is not None:
        metrics["dense_baseline"] = baseline
    grid = [round(0.05 * i, 2) for i in range(21)]
    curve = coverage_precision(
        [r.evidence for r in answerable], [r.evidence for r in unanswerable + offtopic], grid
    )
    return Report(metrics, curve, results)


def metrics_of(results: list[Result]) -> dict:
    """The metrics of some of a report's results, as the whole report's are computed."""
    return _report(results).metrics


def cross_validate(report: Report, k: int) -> dict:
    """The report's headline figures (`folds.HEADLINE`) over `k` folds by question: each
    fold's figures, computed as the whole report's are, and their mean, sd and se."""
    fold = folds.assign([(r.id, r.kind) for r in report.results], k)
    per_fold = [_report([r for r in report.results if fold[r.id] == i]).metrics for i in range(k)]
    return {
        "k": k,
        "sizes": [sum(f == i for f in fold.values()) for i in range(k)],
        "figures": folds.summarise(per_fold),
        "per_fold": [
            {f"{g}.{n}": m.get(g, {}).get(n) for g, n in folds.HEADLINE} for m in per_fold
        ],
    }


def worst_lines(report: Report, n: int) -> str:
    """The `n` questions answered worst (`worst`), each with its first three quotes and their
    block kinds, the shown rank of the first relevant document and of the first right quote."""
    out = [f"the {n} questions answered worst (documents as shown)"]
    for r in worst(report, n):
        doc = r.first_relevant or "none in the first 10"
        right = r.first_right or f"none in the first {len(r.quotes)}"
        what = "gold answer" if r.hit1 is not None else "relevant document"
        out.append(
            f"{r.id}: first relevant document at {doc}; first quote with a {what} at {right}"
        )
        out.append(textwrap.indent(textwrap.fill(r.question[:300], 88), "  Q: "))
        if r.refused:
            out.append(f"  (refused: {r.refused})")
        elif r.abstained or not r.quotes:
            out.append("  (abstained)")
        for rank, quote in enumerate(r.quotes[:3], 1):
            line = f"[{quote.get('kind', 'prose')}] {quote['doc_id']}: {quote['text'][:300]}"
            out.append(
                textwrap.fill(line, 88, initial_indent=f"  {rank}. ", subsequent_indent="     ")
            )
    return "\n".join(out)

"""Abstention thresholds of a corpus that holds its text twice (a manual as HTML and as PDF)."""

from verbatim.engine import ingest_paths
from verbatim.index import generations, load_index

TOPICS = {
    "soil": "Compost feeds the soil with slow nutrients for every garden bed",
    "bread": "Knead the dough until it springs back under a floured thumb",
    "bikes": "Oil the chain after every wet ride so rust never takes hold",
    "tea": "Steep green tea leaves in water well below the boiling point",
    "kites": "Launch the kite with the steady wind blowing at your back",
    "boats": "Check the bilge pump before every trip out on the open lake",
}


def write_manual(folder, copies: int) -> None:
    """One page per topic, each of four long sentences; `copies` identical folders of it."""
    for copy in range(copies):
        for name, first in TOPICS.items():
            page = folder / f"copy{copy}" / f"{name}.txt"
            page.parent.mkdir(parents=True, exist_ok=True)
            lines = [f"{first} in the {word} season of the year." for word in TOPICS]
            page.write_text(f"{name.title()}\n\n" + " ".join(lines) + "\n")


def thresholds(folder, settings, embedder) -> dict:
    ingest_paths([folder], settings, embedder)
    with load_index(settings) as index:
        return generations.read_manifest(index.path)["calibration"]


def test_a_corpus_held_twice_keeps_the_thresholds_of_one_copy(tmp_path, settings, fake_embedder):
    """Each probe's copy (cosine 1) is left out as its own passage is; without that, every
    probe finds itself and the thresholds rise to ~1, refusing every real question."""
    write_manual(tmp_path / "once", 1)
    write_manual(tmp_path / "twice", 2)
    once = thresholds(
        tmp_path / "once", settings.model_copy(update={"collection": "a"}), fake_embedder
    )
    twice = thresholds(
        tmp_path / "twice", settings.model_copy(update={"collection": "b"}), fake_embedder
    )
    assert once["method"].startswith("in-domain") and twice["method"].startswith("in-domain")
    assert twice["sentence"] < 0.97 and twice["passage"] < 0.97
    assert abs(twice["sentence"] - once["sentence"]) < 0.02
    assert abs(twice["passage"] - once["passage"]) < 0.02

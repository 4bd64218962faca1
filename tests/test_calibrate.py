"""Abstention thresholds: of a corpus that holds its text twice (a manual as HTML and as PDF),
and as a build measures them (`Probing`) against a loaded index."""

from pathlib import Path

import numpy as np
import pytest

from verbatim.calibrate import calibrate
from verbatim.engine import ingest_paths
from verbatim.index import generations, load_index, probing
from verbatim.index.probing import MAPS, Probing, release_mapped

release = release_mapped  # the real one, for the test that patches it to count its calls

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


@pytest.mark.parametrize("resident", [probing.RESIDENT_MAPPED, 0])
def test_a_build_calibrates_as_a_loaded_index_would_without_filling_its_caches(
    tmp_path, settings, fake_embedder, monkeypatch, resident
):
    """A build calibrates through `Probing` (#34: mapped pages given back past a bound, texts
    read, not cached), and must find what the same generation, loaded as a server loads it,
    finds: the same thresholds and summaries, to the last digit. With a bound of 0 its pages
    are given back before every probe."""
    released = []
    monkeypatch.setattr(probing, "RESIDENT_MAPPED", resident)
    monkeypatch.setattr(probing, "release_mapped", lambda path: released.append(release(path)))
    write_manual(tmp_path / "twice", 2)
    stored = thresholds(tmp_path / "twice", settings, fake_embedder)
    assert stored["method"].startswith("in-domain")
    with load_index(settings) as index:
        assert calibrate(index, fake_embedder, settings) == stored
        assert index._recent_texts.cache_info().currsize > 0  # a loaded index caches its texts
        path, manifest = index.path, index.manifest
    released.clear()
    with Probing(path, manifest) as fresh:
        assert calibrate(fresh, fake_embedder, settings) == stored
        assert fresh._recent_texts.cache_info().currsize == 0
    assert (min(released) > 0 and len(released) > 1) if resident == 0 else not released


def _resident_bytes(path) -> int:
    """How much of `path` this process's mappings hold resident (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        fields = line.split()
        if "-" in fields[0] and len(fields) >= 5 and not fields[0].endswith(":"):
            inside = len(fields) == 6 and fields[5] == str(path.resolve())
        elif inside and fields[0] == "Rss:":
            total += int(fields[1]) * 1024
    return total


@pytest.mark.skipif(not MAPS.exists(), reason="the kernel lists no mappings (not Linux)")
def test_release_mapped_gives_back_the_pages_of_a_folder_and_keeps_their_bytes(tmp_path):
    matrix = np.arange(1 << 20, dtype=np.float32).reshape(-1, 256)  # 4 MiB
    np.save(tmp_path / "rows.npy", matrix)
    mapped = np.load(tmp_path / "rows.npy", mmap_mode="r")
    assert float(mapped.sum()) == float(matrix.sum())  # every page read through the map
    assert _resident_bytes(tmp_path / "rows.npy") >= 4 << 20
    assert release_mapped(tmp_path / "elsewhere") == 0
    assert release_mapped(tmp_path) >= 4 << 20
    assert _resident_bytes(tmp_path / "rows.npy") == 0
    assert np.array_equal(mapped, matrix)

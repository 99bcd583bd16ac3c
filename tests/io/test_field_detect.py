"""Field detection judged on the corpus of real footage (tests/field_corpus.py): auto never
deinterlaces a progressive clip, finds >= 95 % of the interlaced and of the telecined ones
with the right field order, and says "unsure" in one warning line."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import pytest
from field_corpus import CorpusClip, build_corpus, corpus_missing_reason

from vidsr.io.deinterlace import plan_deinterlace
from vidsr.io.field_detect import (
    Cadence,
    FieldMeasures,
    detect_fields,
    judge,
)
from vidsr.io.probe import probe

MISSING = corpus_missing_reason()
needs_corpus = pytest.mark.skipif(MISSING is not None, reason=MISSING or "")


def check_criteria(clips: list[CorpusClip]) -> None:
    found: dict[str, list[bool]] = {"interlaced": [], "telecined": []}
    for clip in clips:
        info = probe(clip.path)
        plan = plan_deinterlace(info, "auto", "auto", "frame")
        if clip.kind == "progressive":
            assert plan is None, (clip.name, plan)
            continue
        method = "ivtc" if clip.kind == "telecined" else "deinterlace"
        found[clip.kind].append(plan is not None and plan.method == method
                                and plan.order == clip.order)
    for kind, hits in found.items():
        assert hits and sum(hits) >= 0.95 * len(hits), (kind, hits)


@pytest.fixture(scope="module")
def fast_corpus() -> list[CorpusClip]:
    """The fast subset, in the corpus's cache folder (built there once)."""
    if MISSING is not None:
        pytest.skip(MISSING)
    return build_corpus(full=False)


def test_auto_on_the_fast_corpus(fast_corpus: list[CorpusClip]):
    assert {c.kind for c in fast_corpus} == {"progressive", "interlaced", "telecined"}
    check_criteria(fast_corpus)


@needs_corpus
@pytest.mark.slow
def test_auto_on_the_full_corpus():
    check_criteria(build_corpus(full=True))


def test_the_corpus_is_rebuilt_the_same(fast_corpus: list[CorpusClip], tmp_path: Path):
    remade = build_corpus(full=False, folder=tmp_path)
    assert [c.path.name for c in remade] == [c.path.name for c in fast_corpus]
    for clip, again in zip(fast_corpus, remade, strict=True):
        assert (clip.kind, clip.order, clip.coding) == (again.kind, again.order, again.coding)
        if clip.coding.startswith("ffv1"):  # lossless: the same pictures
            assert np.array_equal(pictures(clip.path), pictures(again.path)), clip.name


def pictures(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_the_foreman_crop_written_as_ffv1_rgb_stays_progressive(
        fast_corpus: list[CorpusClip]):
    clip = next(c for c in fast_corpus if c.name == "prog-foreman-crop-ffv1-rgb")
    assert probe(clip.path).field_order == "unknown"
    verdict = detect_fields(clip.path)
    assert verdict.kind == "progressive", verdict.evidence
    assert plan_deinterlace(probe(clip.path), "auto", "auto", "frame") is None


def test_unsure_keeps_the_picture_with_one_warning(monkeypatch, caplog, tmp_path: Path):
    from clipgen import make_interlaced

    path = make_interlaced(tmp_path / "c.mkv", "tff", None)
    unsure = judge(FieldMeasures(59, 40, 0.5, 0.05, Cadence(0, 0, 11), Cadence(0, 0, 11)))
    assert unsure.kind == "unsure" and unsure.order is None
    monkeypatch.setattr("vidsr.io.deinterlace.detect_fields", lambda *_: unsure)
    with caplog.at_level(logging.INFO, logger="vidsr"):
        assert plan_deinterlace(probe(path), "auto", "auto", "frame") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "--deinterlace on" in warnings[0], warnings

    film = judge(FieldMeasures(59, 59, 0.3, -0.5, Cadence(1, 10, 11, 0.2),
                               Cadence(3, 10, 11, 0.2)))  # a tff cadence, bff matches
    assert film.kind == "unsure" and film.film
    monkeypatch.setattr("vidsr.io.deinterlace.detect_fields", lambda *_: film)
    caplog.clear()
    assert plan_deinterlace(probe(path), "auto", "auto", "frame") is None
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "--deinterlace ivtc" in warnings[0], warnings


def test_a_cadence_names_its_field_order():
    # 3:2 top field first: the top field repeats at frame 1, the bottom at frame 3.
    tff = judge(FieldMeasures(59, 59, 0.3, 0.4, Cadence(1, 11, 11, 0.1),
                              Cadence(3, 11, 11, 0.1)))
    bff = judge(FieldMeasures(59, 59, 0.3, -0.4, Cadence(3, 11, 11, 0.1),
                              Cadence(1, 11, 11, 0.1)))
    assert (tff.kind, tff.order, bff.kind, bff.order) == ("telecined", "tff",
                                                          "telecined", "bff")
    # Duplicated frames repeat both fields at once: progressive, not film.
    duplicated = judge(FieldMeasures(59, 59, 0.9, 0.0, Cadence(2, 11, 11, 0.1),
                                     Cadence(2, 11, 11, 0.1)))
    assert duplicated.kind == "progressive"

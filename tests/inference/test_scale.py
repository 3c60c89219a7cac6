"""Automatic magnification: the per-tile estimate, the passes that find it, the consensus."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hemoscan.datamodel import Detection, ScaleEstimate, TileResult
from hemoscan.inference.predictor import Prediction, Predictor
from hemoscan.inference.scale import (
    MIN_RBC,
    NUCLEATED_TO_RBC,
    PROBE_SCALE,
    keeps,
    measure,
    parse_scale,
    sample_consensus,
    scale_summary,
    unclaimed_red_cells,
)


def _cells(label: str, diameter: float, n: int, score: float = 0.9) -> list[Detection]:
    return [Detection(label, score, 100 * i, 0, 100 * i + diameter, diameter) for i in range(n)]


def test_red_cells_give_the_estimate_and_nucleated_cells_stand_in() -> None:
    m = measure(_cells("rbc", 80, MIN_RBC) + _cells("rbc", 80, 20, score=0.5), 40.0)
    assert (m.source, m.cell_px, m.cells, m.estimate) == ("auto-rbc", 80, MIN_RBC + 20, 0.5)
    assert m.confidence == pytest.approx((0.9 * MIN_RBC + 0.5 * (10 - MIN_RBC)) / 10)
    few_rbc = _cells("rbc", 80, MIN_RBC - 1) + _cells("nucleated", 64, 3)
    m = measure(few_rbc, 40.0)
    assert m.source == "auto-nucleated" and m.estimate == pytest.approx(40 * NUCLEATED_TO_RBC / 64)
    assert measure(_cells("nucleated", 64, 2), 40.0) is None


def test_the_sample_consensus_is_a_median_without_outliers() -> None:
    assert sample_consensus([]) is None
    assert sample_consensus([0.5, 0.52, 0.48, 0.5, 2.0]) == pytest.approx(0.5)
    assert sample_consensus([0.4, 0.5, 0.6]) == pytest.approx(0.5)


def test_scale_values_parse_and_refuse() -> None:
    assert parse_scale("auto") == "auto" and parse_scale("AUTO ") == "auto"
    assert parse_scale("0.5") == 0.5 and parse_scale(2) == 2.0
    for bad in ("0", "-1", "nan", "inf", "big"):
        with pytest.raises(ValueError, match="scale must be"):
            parse_scale(bad)


def test_scale_summary_counts_sources_and_settles_on_own_estimates() -> None:
    tiles = [
        TileResult("a", "1", "ok", scale=ScaleEstimate(1.0, "auto-rbc", 0.5)),
        TileResult("a", "2", "ok", scale=ScaleEstimate(0.333, "auto-rbc", 0.45)),
        TileResult("a", "3", "ok", scale=ScaleEstimate(0.47, "sample")),
        TileResult("a", "4", "error"),
        TileResult("b", "1", "ok", scale=ScaleEstimate(1.0, "default")),
    ]
    summary = scale_summary(tiles)
    assert summary["a"]["consensus"] == pytest.approx(math.sqrt(0.5 * 0.45), abs=1e-4)
    assert summary["a"]["tiles_by_source"] == {"auto-rbc": 2, "sample": 1}
    assert summary["b"] == {"consensus": None, "estimates": None, "tiles_by_source": {"default": 1}}


def test_a_pass_is_kept_only_close_to_the_estimate() -> None:
    assert keeps(1.0, 1.05) and keeps(1.0, 0.93) and not keeps(1.0, 1.25)  # 32 px: enlarged
    # the network loses more on cells smaller than its own than on larger ones
    assert keeps(1.0, 1 / 1.14) and not keeps(1.0, 1.14)
    # a probe at 1/3 stands for red cells of about 109-132 px, not for 100 px ones (scale 0.4)
    assert keeps(PROBE_SCALE, 40 / 110) and keeps(PROBE_SCALE, 40 / 130)
    assert not keeps(PROBE_SCALE, 40 / 100)


class _SizeBoundDetector:
    """Stands in for the network: each image is filled with its true red-cell diameter
    (pixels); at a pass of scale ``s`` the cells are ``D * s`` px, found only from 15 px up,
    measured as a network does, pulled into the 22-66 px it knows, and scored the lower the
    farther they are from the 40 px it was trained at."""

    def __init__(self) -> None:
        self.passes: list[tuple[int, float]] = []
        self.rereads: list[tuple[int, float]] = []  # passes below the thresholds, to measure

    def __call__(
        self, images: list[np.ndarray], scales: list[float], thresholds: np.ndarray | None = None
    ) -> list[Prediction]:
        out = []
        for image, s in zip(images, scales):
            true_d = float(image[0, 0, 0])
            (self.passes if thresholds is None else self.rereads).append((int(true_d), s))
            seen = true_d * s
            score = max(0.1, 0.9 - 0.01 * abs(seen - 40))
            cells = [] if seen < 15 else _cells("rbc", min(max(seen, 22), 66) / s, 10, score)
            out.append(Prediction(cells, []))
        return out


@pytest.mark.parametrize("true_d", [25, 32, 40, 45, 55, 70, 90, 100, 110, 150, 180])
def test_auto_scale_finds_each_magnification(tiny_model, monkeypatch, true_d: int) -> None:
    detector = _SizeBoundDetector()
    predictor = Predictor(tiny_model, device="cpu", scale="auto")
    monkeypatch.setattr(predictor, "_detect", detector)
    (pred,) = predictor.predict_scaled([np.full((300, 400, 3), true_d, np.uint8)])
    truth = 40.0 / true_d
    assert pred.scale.source == "auto-rbc"
    assert pred.scale.estimate == pytest.approx(truth, rel=0.02)
    assert keeps(pred.scale.scale, truth)  # analysed within the network's tolerance
    assert len(detector.passes) <= 3
    assert detector.passes[0][1] == 1.0
    if 37 <= true_d <= 46:  # about the model's magnification: the scale-1 pass settles it alone
        assert pred.scale.scale == 1.0 and len(detector.passes) == 1
    else:  # smaller or larger red cells: the probe, then perhaps the estimate
        assert detector.passes[1][1] == PROBE_SCALE
    # the probe is blind only to small red cells, which the scale-1 pass measured: no re-read
    assert detector.rereads == []


#: Look-alikes (e.g. parasites) a pass of scale ``s`` takes for red cells: ``(diameter px, how
#: many, score)``, or ``None`` where it sees none.
Lookalikes = Callable[[float], "tuple[float, int, float] | None"]


@dataclass
class _OilField:
    """Stands in for the network on a field of ``real`` red cells of ``real_px`` (175: a 100x
    oil field), seen as red cells only at 22-66 model px (score ``real_score(s)`` at a pass of
    scale ``s``), beside other objects it also takes for red cells (:data:`Lookalikes`)."""

    lookalikes: Lookalikes
    real_score: Callable[[float], float]
    real: int = 10
    real_px: float = 175.0
    #: The red-cell threshold of a pass at the model's thresholds (0: every cell is reported).
    rbc_threshold: float = 0.0

    def __call__(
        self, images: list[np.ndarray], scales: list[float], thresholds: np.ndarray | None = None
    ) -> list[Prediction]:
        floor = self.rbc_threshold if thresholds is None else float(thresholds[0])  # rbc first
        out = []
        for s in scales:
            found = self.lookalikes(s)
            cells = _cells("rbc", *found) if found else []
            if 22 <= self.real_px * s <= 66:
                cells += _cells("rbc", self.real_px, self.real, self.real_score(s))
            out.append(Prediction([c for c in cells if c.score >= floor], []))
        return out


def _scaled(model: Any, field: _OilField, shape: tuple[int, int] = (600, 800)) -> ScaleEstimate:
    """The scale ``Predictor(model, scale="auto")`` settles an image of ``shape`` on, with
    ``field`` standing in for the network."""
    predictor = Predictor(model, device="cpu", scale="auto")
    predictor._detect = field  # type: ignore[method-assign]
    (pred,) = predictor.predict_scaled([np.full((*shape, 3), 200, np.uint8)])
    return pred.scale


def test_small_objects_at_scale_one_do_not_enlarge_a_high_magnification_field(tiny_model) -> None:
    """Platelet-sized objects (24 px) pass for red cells that ask for 1.67x at scale 1; the
    probe sees the real ones, more confidently, and the field is shrunk to 40 / 175."""
    field = _OilField(lambda s: (24.0, 10, 0.6) if 24 * s >= 12 else None, lambda s: 0.85)
    scale = _scaled(tiny_model, field)
    assert scale.estimate == pytest.approx(40 / 175, rel=0.02)
    assert keeps(scale.scale, 40 / 175)


def test_a_probe_unsure_of_its_red_cells_still_measures_them(tiny_model) -> None:
    """At 100x oil the scale-1 pass takes 6 fragments (51 px, 0.7% of the tile) for red cells
    asking for 0.78, and the probe scores the real red cells 0.4, under the 0.5 threshold, so at
    the model's thresholds it sees none; read again down to half the threshold it measures them,
    and the field is shrunk to 40 / 175 (Giemsa field L19_M1_C4 with hemoscan-lite0-v4-fastbox)."""
    field = _OilField(lambda s: (51.0, 6, 0.55) if s == 1.0 else None, lambda s: 0.4,
                      rbc_threshold=0.5)  # fmt: skip
    assert tiny_model.config.threshold("rbc") == 0.5
    scale = _scaled(tiny_model, field, shape=(1500, 1500))
    assert scale.estimate == pytest.approx(40 / 175, rel=0.02)
    assert keeps(scale.scale, 40 / 175)
    unmeasurable = replace(field, real_score=lambda s: 0.2)  # under half the threshold too
    assert _scaled(tiny_model, unmeasurable, shape=(1500, 1500)).estimate == pytest.approx(40 / 51)
    # many more of them (3.5% of the tile) are credible red cells: no re-read
    covering = replace(field, lookalikes=lambda s: (51.0, 30, 0.55) if s == 1.0 else None)
    assert _scaled(tiny_model, covering, shape=(1500, 1500)).estimate == pytest.approx(40 / 51)


def test_the_pass_at_the_estimate_is_final_where_smaller_passes_read_cells_larger(
    tiny_model,
) -> None:
    """Pale overlapping red cells (175 px) read larger by each smaller pass, as on the 100x oil
    Giemsa fields: the probe's reading chooses the scale, and the pass there is not followed
    down (following its readings settled the field at 0.185)."""
    scales: list[float] = []

    def drifting(images, passes, thresholds=None):  # type: ignore[no-untyped-def]
        scales.extend(passes)
        return [Prediction(_cells("rbc", 175 * (PROBE_SCALE / s) ** 0.4, 12) if s < 0.5 else [],
                           []) for s in passes]  # fmt: skip

    scale = _scaled(tiny_model, drifting)  # type: ignore[arg-type]
    assert scale.estimate == pytest.approx(40 / 175, rel=0.01)
    assert scale.scale == pytest.approx(40 / 175, rel=0.01)
    assert scales == [1.0, PROBE_SCALE, scale.scale]


def test_a_reread_keeps_only_red_cells_the_scale_one_pass_called_nothing_else() -> None:
    """Unsure, a shrunk pass takes lavage leukocytes for red cells: those the scale-1 pass
    called nucleated (or a host) do not count, nor do the re-read's own nucleated cells."""
    leukocyte = Detection("nucleated", 0.8, 0, 0, 70, 70)
    reread = [
        Detection("rbc", 0.3, 4, 2, 72, 70),  # the leukocyte again (IoU 0.89)
        Detection("rbc", 0.3, 200, 0, 370, 170),  # a red cell no confident pass saw
        Detection("nucleated", 0.3, 400, 0, 470, 70),
    ]
    assert unclaimed_red_cells(reread, [leukocyte, Detection("rbc", 0.9, 0, 0, 70, 70)]) == [
        reread[1]
    ]


def test_tiles_without_cells_and_fixed_scales(tiny_model, monkeypatch) -> None:
    predictor = Predictor(tiny_model, device="cpu", scale="auto")
    monkeypatch.setattr(predictor, "_detect", _SizeBoundDetector())
    blank, known = np.full((64, 64, 3), 5, np.uint8), np.full((64, 64, 3), 80, np.uint8)
    empty, fixed = predictor.predict_scaled([blank, known], [None, (0.5, "sample")])
    assert empty.scale == ScaleEstimate(1.0, "default")
    assert fixed.scale == ScaleEstimate(0.5, "sample")
    given = Predictor(tiny_model, device="cpu", scale=0.25)
    monkeypatch.setattr(given, "_detect", _SizeBoundDetector())
    assert given.predict_scaled([known])[0].scale == ScaleEstimate(0.25, "given")


def test_two_readings_far_apart_are_each_looked_at_in_their_own_pass(tiny_model) -> None:
    """The scale-1 pass (small objects, 1.67x) outranks the probe (real red cells at 58 model
    px, 0.229x); passes at both estimates settle it on the real red cells."""
    field = _OilField(
        lambda s: (24.0, 10, 0.6 - 0.002 * abs(24 * s - 40)) if 24 * s >= 12 else None,
        lambda s: 0.9 - 0.02 * abs(175 * s - 40),
    )
    scale = _scaled(tiny_model, field)
    assert scale.estimate == pytest.approx(40 / 175, rel=0.02)
    assert scale.scale == pytest.approx(40 / 175, rel=0.01)


def test_where_two_readings_disagree_the_cells_covering_the_field_win(tiny_model) -> None:
    """Red cells cover much of a smear, the small objects taken for them little: however sure
    the network is of 60 parasites (0.9 against 0.7 at every pass), the field is shrunk to the
    real red cells' 40 / 175."""
    field = _OilField(lambda s: (24.0, 60, 0.9) if 24 * s >= 12 else None, lambda s: 0.7)
    scale = _scaled(tiny_model, field)
    assert scale.estimate == pytest.approx(40 / 175, rel=0.02)
    assert scale.scale == pytest.approx(40 / 175, rel=0.01)


def test_a_scale_one_reading_covering_little_of_the_tile_does_not_settle_it(tiny_model) -> None:
    """The scale-1 pass takes 8 parasites for red cells of exactly the model's 40 px, covering
    under 1% of the field: the probe still looks, and finds the real ones."""
    field = _OilField(lambda s: (40.0 / s, 8, 0.9) if s == 1.0 else None, lambda s: 0.8, real=20)
    scale = _scaled(tiny_model, field, (1200, 1600))
    assert scale.estimate == pytest.approx(40 / 175, rel=0.02)
    assert scale.scale == pytest.approx(40 / 175, rel=0.01)


def test_clusters_read_as_cells_by_the_probe_do_not_outweigh_surer_red_cells(tiny_model) -> None:
    """A dense field of 32 px red cells, whose clusters the probe reads as 72 px cells: they
    cover a little more of the tile (1.3x) but the network is surer of the real red cells, so
    the field is analysed at 40 / 32."""
    clusters = _OilField(lambda s: (72.0, 10, 0.6) if 22 <= 72 * s <= 66 else None,
                         lambda s: 0.85, real=40, real_px=32.0)  # fmt: skip
    scale = _scaled(tiny_model, clusters)
    assert scale.estimate == pytest.approx(40 / 32, rel=0.02)
    assert keeps(scale.scale, 40 / 32)


GIEMSA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "giemsa-macrophages"


@pytest.mark.skipif(not (GIEMSA / "images").is_dir(), reason="needs ../shared/datasets")
@pytest.mark.parametrize("field", ["L3_M2_C13", "L19_M1_C4", "L19_M1_C5"])
def test_the_default_model_shrinks_the_oil_immersion_giemsa_fields(field: str) -> None:
    """Three real 100x oil fields (red cells ~175 px: truth about 0.23), whose platelets and
    parasites pass for small red cells at scale 1: the default model settles each near 0.23
    (with session 8's rule, L3_M2_C13 was enlarged 1.44x)."""
    from hemoscan.io.images import read_tile
    from hemoscan.models.loading import DEFAULT_MODEL

    predictor = Predictor(DEFAULT_MODEL, scale="auto")
    (pred,) = predictor.predict_scaled([read_tile(GIEMSA / "images" / f"{field}.png")])
    assert pred.scale.source == "auto-rbc"
    assert 0.235 / 1.25 <= pred.scale.scale <= 0.235 * 1.25

"""Per-sample count agreement (Bland-Altman) of hemophagocytes per 1000 nucleated cells."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SampleCount:
    """One sample's hemophagocyte and nucleated-cell counts, true and predicted."""

    sample: str
    true_hemophagocytes: int
    true_nucleated: int
    pred_hemophagocytes: int
    pred_nucleated: int

    @property
    def true_per_1000(self) -> float | None:
        return (
            1000 * self.true_hemophagocytes / self.true_nucleated if self.true_nucleated else None
        )

    @property
    def pred_per_1000(self) -> float | None:
        return (
            1000 * self.pred_hemophagocytes / self.pred_nucleated if self.pred_nucleated else None
        )


@dataclass(frozen=True)
class CountAgreement:
    """Agreement of per-sample hemophagocytes per 1000 nucleated cells, predicted vs true.

    ``pairs`` holds ``(sample, true, predicted)`` for every sample where both are defined;
    ``bias`` is the mean of predicted - true, ``limits`` bias +- 1.96 SD (None below 2 pairs).
    """

    samples: tuple[SampleCount, ...]
    pairs: tuple[tuple[str, float, float], ...]
    mean_abs_difference: float | None
    bias: float | None
    sd: float | None
    limits: tuple[float, float] | None

    def to_dict(self) -> dict[str, object]:
        return {
            "samples": len(self.samples),
            "pairs_n": len(self.pairs),
            "pairs": [
                {"sample": s, "true_per_1000": t, "pred_per_1000": p} for s, t, p in self.pairs
            ],
            "counts": [
                {
                    "sample": s.sample,
                    "true_hemophagocytes": s.true_hemophagocytes,
                    "true_nucleated": s.true_nucleated,
                    "pred_hemophagocytes": s.pred_hemophagocytes,
                    "pred_nucleated": s.pred_nucleated,
                }
                for s in self.samples
            ],
            "mean_abs_difference": self.mean_abs_difference,
            "bias": self.bias,
            "sd": self.sd,
            "limits_of_agreement": list(self.limits) if self.limits else None,
        }


def count_agreement(samples: Sequence[SampleCount]) -> CountAgreement:
    """Per-sample count agreement of hemophagocytes per 1000 nucleated cells (see module)."""
    pairs = tuple(
        (s.sample, float(s.true_per_1000), float(s.pred_per_1000))  # type: ignore[arg-type]
        for s in samples
        if s.true_per_1000 is not None and s.pred_per_1000 is not None
    )
    if not pairs:
        return CountAgreement(tuple(samples), (), None, None, None, None)
    diff = np.array([p - t for _, t, p in pairs])
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1)) if len(diff) >= 2 else None
    limits = (bias - 1.96 * sd, bias + 1.96 * sd) if sd is not None else None
    return CountAgreement(tuple(samples), pairs, float(np.abs(diff).mean()), bias, sd, limits)

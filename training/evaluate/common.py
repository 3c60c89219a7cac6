"""Constants, the error and the model type shared by the evaluation modules."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from hemoscan.errors import HemoscanError

from ..metrics import TuningRule

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "datasets"
FREE_CLASSES = ("rbc", "platelet", "nucleated")
REPORT_SUITES = ("txl-val", "txl-val-native", "txl-val-scanner", "composed-val",
                 "composed-val-real-host", "composed-val-procedural-host", "segpc-heldout",
                 "segpc-heldout-native", "bal-heldout")  # fmt: skip
TUNING_SUITES = ("txl-dev", "composed-dev")
SHARED_SUITES = (*REPORT_SUITES, *TUNING_SUITES)
#: Default prediction floor of the AP pass (and the lowest tuned threshold).
EVAL_CONF = 0.05
COMPOSED_N = 200
COMPOSED_CROP = 512
COMPOSED_SAMPLE_FIELDS = 10
#: Default tuning rules: hemophagocytes the best sensitivity at <= 0.05 false positives per
#: tile; every other class the highest F1.
HEMOPHAGOCYTE_FP_TARGET = 0.05
DEFAULT_RULES: Mapping[str, TuningRule] = {
    "hemophagocyte": TuningRule("recall_at_fp", HEMOPHAGOCYTE_FP_TARGET)
}
THRESHOLDS_SIDECAR = "thresholds.json"


class EvaluationError(HemoscanError):
    """An evaluation request cannot be carried out; the message says why and what to change."""

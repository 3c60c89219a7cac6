"""Whether a faster precision of a model may be its CPU default: the rule, measured.

A lower precision (an int8 export) may replace float32 as a model's CPU default only when, on
the same weights, suites and thresholds:

* on every REAL suite, no class loses more than :data:`AP50_TOLERANCE` of AP50;
* on :data:`CALLS_SUITE` (COMPOSED), the hemophagocyte calls are the same calls: each call by
  its field and the true host it found, or as a false call in its field
  (``call_outcomes`` of ``hemoscan evaluate``'s JSON).

Otherwise float32 stays the default and the lower precision an option. The two inputs are the
JSON files of two ``hemoscan evaluate --out`` runs, float32 first::

    hemoscan evaluate --model hemoscan-lite0-v5 --backend onnx --precision fp32 --data SUITES --out fp32.json
    hemoscan evaluate --model INT8_FOLDER --backend onnx --data SUITES --out int8.json
    python -m hemoscan_training.precision_rule fp32.json int8.json

with SUITES the real held-out suites and composed-val, e.g. ``shared:txl-val,txl-val-native,
txl-val-scanner,bal-heldout,segpc-heldout-native,composed-val``. Prints every comparison and
the verdict; exits 0 when the candidate passes, 1 when it does not, 2 when the two files cannot
be compared (the message says why).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemoscan.errors import HemoscanError

#: The most AP50 a class may lose on a real suite.
AP50_TOLERANCE = 0.01
#: The composed suite whose hemophagocyte calls must not change.
CALLS_SUITE = "composed-val"


class NotComparable(HemoscanError):
    """Two evaluations that the rule cannot compare; the message says why."""


@dataclass(frozen=True)
class APCheck:
    """One class's AP50 on one real suite, in the reference and the candidate."""

    suite: str
    label: str
    reference: float
    candidate: float | None

    @property
    def loss(self) -> float | None:
        return None if self.candidate is None else self.reference - self.candidate

    @property
    def passes(self) -> bool:
        # rounded: the files hold 4 decimals, and a loss of exactly the tolerance passes
        return self.loss is not None and round(self.loss, 6) <= AP50_TOLERANCE


@dataclass(frozen=True)
class CallsCheck:
    """The hemophagocyte calls on :data:`CALLS_SUITE`: those only the reference made
    (``lost``) and those only the candidate made (``gained``), as ``call_outcomes`` name them."""

    reference_calls: int
    candidate_calls: int
    lost: tuple[str, ...]
    gained: tuple[str, ...]

    @property
    def passes(self) -> bool:
        return not self.lost and not self.gained


@dataclass(frozen=True)
class Verdict:
    """Every check of the rule; the candidate passes when each one does."""

    ap50: tuple[APCheck, ...]
    calls: CallsCheck

    @property
    def passes(self) -> bool:
        return self.calls.passes and all(c.passes for c in self.ap50)


def _section(metrics: Mapping[str, Any], name: str, which: str) -> Mapping[str, Any]:
    section = metrics["sections"].get(name)
    if section is None:
        raise NotComparable(f"the {which} was not evaluated on {name}")
    return section


def judge(reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> Verdict:
    """The rule applied to two ``hemoscan evaluate`` metrics dicts (see the module docstring).

    Raises :class:`NotComparable` when they are not of the same weights and thresholds, the
    candidate misses a suite of the reference, a suite's fields differ in number, the
    reference has no real suite or either lacks :data:`CALLS_SUITE`'s ``call_outcomes``."""
    if reference["model"]["sha256"] != candidate["model"]["sha256"]:
        raise NotComparable("the two evaluations are of different weights (model sha256)")
    if reference["thresholds"] != candidate["thresholds"]:
        raise NotComparable("the two evaluations used different thresholds")
    real = [n for n, s in reference["sections"].items() if s["data"] == "real"]
    if not real:
        raise NotComparable("the reference was evaluated on no real suite")
    for name in [*real, CALLS_SUITE]:
        ref, cand = _section(reference, name, "reference"), _section(candidate, name, "candidate")
        if ref["images"] != cand["images"]:
            raise NotComparable(f"{name}: {ref['images']} fields against {cand['images']}")
    ap50 = []
    for name in real:
        cand_detection = candidate["sections"][name].get("detection", {})
        for label, ref in reference["sections"][name].get("detection", {}).items():
            if ref.get("ap50") is not None:
                value = cand_detection.get(label, {}).get("ap50")
                ap50.append(APCheck(name, label, ref["ap50"], value))
    outcomes = []
    for metrics, which in ((reference, "reference"), (candidate, "candidate")):
        calls = metrics["sections"][CALLS_SUITE].get("hemophagocyte", {}).get("call_outcomes")
        if calls is None:
            raise NotComparable(
                f"the {which}'s {CALLS_SUITE} has no call_outcomes: evaluate it again with this "
                "version of hemoscan"
            )
        outcomes.append(Counter(calls))
    ref_calls, cand_calls = outcomes
    calls = CallsCheck(
        reference_calls=ref_calls.total(),
        candidate_calls=cand_calls.total(),
        lost=tuple(sorted((ref_calls - cand_calls).elements())),
        gained=tuple(sorted((cand_calls - ref_calls).elements())),
    )
    return Verdict(tuple(ap50), calls)


def _describe(metrics: Mapping[str, Any]) -> str:
    model, settings = metrics["model"], metrics.get("settings", {})
    precision = settings.get("quantization") or "full precision"
    return f"{model['name']} {model['version']} ({settings.get('backend', 'torch')}, {precision})"


def report(verdict: Verdict, reference: Mapping[str, Any], candidate: Mapping[str, Any]) -> str:
    """The verdict as text: every AP50 comparison, the calls, and the decision."""
    lines = [
        f"reference: {_describe(reference)}",
        f"candidate: {_describe(candidate)}",
        f"REAL suites, AP50 (a class may lose at most {AP50_TOLERANCE}):",
    ]
    for c in verdict.ap50:
        cand = "-" if c.candidate is None else f"{c.candidate:.4f}"
        loss = "missing" if c.loss is None else f"{-c.loss:+.4f}"
        lines.append(f"  {c.suite:<22} {c.label:<15} {c.reference:.4f}  {cand:>6}  {loss:>8}  "
                     f"{'ok' if c.passes else 'FAILS'}")  # fmt: skip
    calls = verdict.calls
    lines.append(
        f"{CALLS_SUITE} (COMPOSED), hemophagocyte calls (must be the same): "
        f"{calls.reference_calls} and {calls.candidate_calls}, "
        + ("the same" if calls.passes else f"{len(calls.lost) + len(calls.gained)} differ")
    )
    if calls.lost:
        lines.append(f"  made by the reference only: {', '.join(calls.lost)}")
    if calls.gained:
        lines.append(f"  made by the candidate only: {', '.join(calls.gained)}")
    failed = [c for c in verdict.ap50 if not c.passes]
    if verdict.passes:
        lines.append("verdict: PASSES, the candidate may be the CPU default")
    else:
        reasons = [f"{len(failed)} AP50 comparison(s) fail"] if failed else []
        reasons += [] if calls.passes else [f"{CALLS_SUITE} calls changed"]
        lines.append(f"verdict: FAILS ({'; '.join(reasons)}): float32 stays the default, the "
                     "candidate an option")  # fmt: skip
    return "\n".join(lines)


def _load(path: Path) -> dict[str, Any]:
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(metrics.get("sections"), dict) or "sha256" not in metrics["model"]:
            raise ValueError("no sections or model sha256")
    except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
        raise NotComparable(f"{path}: not the JSON of `hemoscan evaluate --out` ({e})") from None
    return metrics


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reference", type=Path, help="float32 evaluation (hemoscan evaluate --out)")
    parser.add_argument("candidate", type=Path, help="the lower precision's evaluation")
    args = parser.parse_args(argv)
    try:
        reference, candidate = _load(args.reference), _load(args.candidate)
        verdict = judge(reference, candidate)
    except NotComparable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (KeyError, TypeError, AttributeError) as e:
        print(f"error: {args.reference} or {args.candidate} is not the JSON of `hemoscan "
              f"evaluate --out` ({type(e).__name__}: {e})", file=sys.stderr)  # fmt: skip
        return 2
    print(report(verdict, reference, candidate))
    return 0 if verdict.passes else 1


if __name__ == "__main__":
    sys.exit(main())

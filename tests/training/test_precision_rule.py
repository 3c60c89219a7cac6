"""The precision rule: AP50 on real suites within the tolerance, composed-val calls unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hemoscan_training.precision_rule import AP50_TOLERANCE, NotComparable, judge, main


def _metrics(quantization: str | None = None) -> dict[str, Any]:
    return {
        "model": {"name": "m", "version": "1", "sha256": "abc"},
        "thresholds": {"rbc": 0.4, "hemophagocyte": 0.5},
        "settings": {"backend": "onnx", "quantization": quantization},
        "sections": {
            "txl-val": {"data": "real", "images": 10, "detection": {
                "rbc": {"ap50": 0.93}, "platelet": {"ap50": 0.85}}},
            "segpc-heldout-native": {"data": "real", "images": 5, "detection": {
                "nucleated": {"ap50": None, "recall": 0.95}}},
            "composed-val": {"data": "composed", "images": 4, "detection": {"rbc": {"ap50": 0.5}},
                             "hemophagocyte": {"call_outcomes": ["0:0", "1:false", "3:0"]}},
        },
    }  # fmt: skip


def test_identical_evaluations_pass() -> None:
    verdict = judge(_metrics(), _metrics("int8-static-qdq"))
    assert verdict.passes
    assert [(c.suite, c.label) for c in verdict.ap50] == [
        ("txl-val", "rbc"),
        ("txl-val", "platelet"),
    ]


@pytest.mark.parametrize(("loss", "passes"), [(AP50_TOLERANCE - 0.001, True),
                                              (AP50_TOLERANCE, True),
                                              (AP50_TOLERANCE + 0.0001, False)])  # fmt: skip
def test_a_real_ap50_may_lose_at_most_the_tolerance(loss: float, passes: bool) -> None:
    candidate = _metrics()
    candidate["sections"]["txl-val"]["detection"]["platelet"]["ap50"] = round(0.85 - loss, 4)
    assert judge(_metrics(), candidate).passes is passes


def test_composed_ap50_is_not_judged_but_its_calls_are() -> None:
    candidate = _metrics()
    candidate["sections"]["composed-val"]["detection"]["rbc"]["ap50"] = 0.1
    assert judge(_metrics(), candidate).passes
    # as many true and false calls, but one found another host: not the same calls
    candidate["sections"]["composed-val"]["hemophagocyte"]["call_outcomes"] = [
        "0:0",
        "1:false",
        "3:1",
    ]
    verdict = judge(_metrics(), candidate)
    assert not verdict.passes
    assert (verdict.calls.lost, verdict.calls.gained) == (("3:0",), ("3:1",))


def test_a_class_the_candidate_lacks_fails() -> None:
    candidate = _metrics()
    del candidate["sections"]["txl-val"]["detection"]["platelet"]
    check = judge(_metrics(), candidate).ap50[1]
    assert check.candidate is None and not check.passes


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m: m["model"].update(sha256="other"), "different weights"),
        (lambda m: m["thresholds"].update(rbc=0.3), "different thresholds"),
        (lambda m: m["sections"].pop("txl-val"), "candidate was not evaluated on txl-val"),
        (lambda m: m["sections"]["txl-val"].update(images=9), "txl-val: 10 fields against 9"),
        (lambda m: m["sections"]["composed-val"]["hemophagocyte"].pop("call_outcomes"),
         "no call_outcomes"),
    ],
)  # fmt: skip
def test_evaluations_that_cannot_be_compared_are_refused(change: Any, message: str) -> None:
    candidate = _metrics()
    change(candidate)
    with pytest.raises(NotComparable, match=message):
        judge(_metrics(), candidate)


def test_main_prints_the_verdict_and_exits_by_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ref, cand = tmp_path / "fp32.json", tmp_path / "int8.json"
    ref.write_text(json.dumps(_metrics()))
    candidate = _metrics("int8-static-qdq")
    candidate["sections"]["txl-val"]["detection"]["rbc"]["ap50"] = 0.9
    cand.write_text(json.dumps(candidate))
    assert main([str(ref), str(ref)]) == 0
    assert "verdict: PASSES" in capsys.readouterr().out
    assert main([str(ref), str(cand)]) == 1
    out = capsys.readouterr().out
    assert "txl-val" in out and "-0.0300  FAILS" in out and "int8-static-qdq" in out
    assert "verdict: FAILS (1 AP50 comparison(s) fail)" in out


def test_main_names_a_file_that_is_not_an_evaluation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_metrics()))
    assert main([str(good), str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not the JSON of `hemoscan evaluate --out`" in err

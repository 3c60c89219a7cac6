"""review.jsonl: the verdict rules, latest wins, torn lines, and concurrent writers."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from hemoscan.review.log import REVIEW_LOG, ReviewError, ReviewLog, Verdict


def _verdict(i: int, verdict: str = "accept", **kw) -> Verdict:
    args = {"label": "macrophage" if verdict == "accept" else kw.pop("label", None),
            "model_label": "macrophage", "model_score": 0.9, **kw}  # fmt: skip
    return Verdict(f"d{i:016x}", verdict, "dr a", "S", "t.png", **args)


def test_verdict_rules() -> None:
    with pytest.raises(ReviewError, match="accept keeps the model's label"):
        Verdict("d1", "accept", "a", "S", "t", "hemophagocyte", model_label="macrophage")
    with pytest.raises(ReviewError, match="relabel needs a label"):
        Verdict("d1", "relabel", "a", "S", "t", "plasma cell", model_label="macrophage")
    with pytest.raises(ReviewError, match="needs a reviewer"):
        Verdict("d1", "reject", " ", "S", "t")
    with pytest.raises(ReviewError, match="needs a box"):
        Verdict("a1", "add", "a", "S", "t", "hemophagocyte", box=(5, 5, 5, 9))
    with pytest.raises(ReviewError, match="only a hemophagocyte holds"):
        Verdict("d1", "relabel", "a", "S", "t", "other_cell", {"rbc": 1, "nucleated": 0, "platelet": 0})
    with pytest.raises(ReviewError, match="whole number"):
        Verdict("d1", "relabel", "a", "S", "t", "hemophagocyte", {"rbc": -1, "nucleated": 0, "platelet": 0})
    hemo = Verdict("d1", "relabel", "a", "S", "t", "hemophagocyte", model_label="macrophage")
    assert hemo.engulfed == {"rbc": 0, "nucleated": 0, "platelet": 0}
    assert hemo.time.endswith("Z") and "T" in hemo.time
    assert Verdict.from_dict(json.loads(json.dumps(hemo.to_dict()))) == hemo


def test_latest_verdict_wins_and_clear_withdraws(tmp_path: Path) -> None:
    log = ReviewLog(tmp_path)
    log.append([_verdict(1), _verdict(2, "reject")])
    log.append([_verdict(1, "relabel", label="artefact"), _verdict(2, "clear")])
    state = log.latest()
    assert set(state) == {"d0000000000000001"} and state["d0000000000000001"].label == "artefact"
    assert len((tmp_path / REVIEW_LOG).read_text().splitlines()) == 4  # nothing rewritten


def test_a_torn_last_line_never_swallows_the_next_verdict(tmp_path: Path) -> None:
    log = ReviewLog(tmp_path)
    log.append([_verdict(1)])
    with open(tmp_path / REVIEW_LOG, "ab") as f:
        f.write(b'{"id": "d0000000000000002", "verd')  # a writer killed mid-line
    assert set(log.latest()) == {"d0000000000000001"}  # a line being written is not read
    log.append([_verdict(3)])
    assert set(log.latest()) == {"d0000000000000001", "d0000000000000003"}
    assert log.unreadable == 1


def _writer(folder: str, who: int, n: int) -> None:
    log = ReviewLog(folder)
    for i in range(n):
        v = Verdict(f"d{who:08x}{i:08x}", "reject", f"reviewer {who}", "S", "t.png",
                    model_label="hemophagocyte", model_score=0.5, source="x" * (who * 300))  # fmt: skip
        log.append([v])


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    writers, n = 4, 60
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, n)) for w in range(writers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    lines = (tmp_path / REVIEW_LOG).read_bytes().splitlines()
    assert len(lines) == writers * n and all(json.loads(line) for line in lines)  # none interleaved
    log = ReviewLog(tmp_path)
    assert len(log.latest()) == writers * n and log.unreadable == 0

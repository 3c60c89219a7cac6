"""The review page's API (Starlette TestClient): guards, paging, verdicts, undo, added cells,
tile views, crops, two reviewers and a folder still being scanned."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from hemoscan.io.output_lock import OutputLock
from hemoscan.review.log import REVIEW_LOG, ReviewLog
from hemoscan.review.server import ReviewSession, create_app
from tests.review.conftest import scan_folder

pytest.importorskip("httpx")
from starlette.testclient import TestClient  # noqa: E402

TOKEN = "test-token"


def _client(scan: Path, reviewer: str = "dr a") -> TestClient:
    return TestClient(create_app(ReviewSession(scan, reviewer), TOKEN), base_url="http://127.0.0.1")


def _get(c: TestClient, url: str) -> dict:
    r = c.get(url, headers={"X-Hemoscan-Token": TOKEN})
    assert r.status_code == 200, r.text
    return r.json()


def _post(c: TestClient, url: str, body: dict, status: int = 200) -> dict:
    r = c.post(url, json=body, headers={"X-Hemoscan-Token": TOKEN})
    assert r.status_code == status, r.text
    return r.json()


def test_the_page_loads_no_remote_asset_and_the_api_needs_the_token(scanned: Path) -> None:
    c = _client(scanned)
    page = c.get("/")
    assert page.status_code == 200 and TOKEN in page.text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page.text)  # no remote asset
    assert not re.search(r"@import|url\(\s*['\"]?https?:", page.text)
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert c.get("/api/state").status_code == 403
    assert c.get("/api/state", headers={"X-Hemoscan-Token": "wrong"}).status_code == 403
    other_host = TestClient(create_app(ReviewSession(scanned, "x"), TOKEN), base_url="http://evil.example")
    assert other_host.get("/api/state", headers={"X-Hemoscan-Token": TOKEN}).status_code == 400


def test_pages_filters_and_cursor_paging_over_pending(scanned: Path) -> None:
    c = _client(scanned)
    everything = _get(c, "/api/suggestions?status=all&limit=1000")
    assert everything["total"] == 10 and {i["label"] for i in everything["items"]} == {"hemophagocyte", "macrophage"}
    first = _get(c, "/api/suggestions?status=pending&limit=4")
    assert (first["total"], first["first_index"], first["has_more"]) == (10, 0, True)
    for item in first["items"]:  # review the first page: the pending list shrinks under us
        _post(c, "/api/verdict", {"id": item["id"], "verdict": "accept"})
    after = first["items"][-1]["pos"]
    second = _get(c, f"/api/suggestions?status=pending&limit=4&after={after}")
    assert second["total"] == 6 and second["first_index"] == 0
    assert second["items"][0]["id"] == everything["items"][4]["id"]  # nothing skipped
    back = _get(c, f"/api/suggestions?status=all&limit=2&before={second['items'][0]['pos']}")
    assert [i["id"] for i in back["items"]] == [i["id"] for i in everything["items"][2:4]]
    p2 = _get(c, "/api/suggestions?status=all&sample=P2&label=macrophage")
    assert p2["total"] == 2 and all(i["sample"] == "P2" and i["label"] == "macrophage" for i in p2["items"])
    assert _get(c, "/api/suggestions?status=all&min_score=0.99")["total"] == 0
    by_score = _get(c, "/api/suggestions?status=all&sort=score")
    scores = [i["score"] for i in by_score["items"]]
    assert scores == sorted(scores, reverse=True)


def test_verdicts_relabels_undo_and_resume(scanned: Path) -> None:
    c = _client(scanned)
    items = _get(c, "/api/suggestions?status=all&label=hemophagocyte")["items"]
    a, b, d = items[0], items[1], items[2]
    got = _post(c, "/api/verdict", {"id": a["id"], "verdict": "accept",
                                    "engulfed": {"rbc": 3, "nucleated": 1, "platelet": 0}})  # fmt: skip
    assert got["state"] == "confirmed" and got["final_engulfed"] == {"rbc": 3, "nucleated": 1, "platelet": 0}
    got = _post(c, "/api/verdict", {"id": b["id"], "verdict": "relabel", "label": "macrophage"})
    assert (got["state"], got["final_label"], got["final_engulfed"]) == ("rejected", "macrophage", None)
    _post(c, "/api/verdict", {"id": d["id"], "verdict": "reject"})
    _post(c, "/api/verdict", {"id": d["id"], "verdict": "clear"})  # undo: pending again
    bad = _post(c, "/api/verdict", {"id": a["id"], "verdict": "relabel", "label": "plasma"}, 400)
    assert "relabel needs a label" in bad["error"]
    assert "unknown id" in _post(c, "/api/verdict", {"id": "d123", "verdict": "accept"}, 404)["error"]
    state = {s["sample"]: s for s in _get(c, "/api/state")["samples"]}
    hemo = state["P1"]["classes"]["hemophagocyte"]
    assert (hemo["suggested"], hemo["confirmed"], hemo["rejected"], hemo["pending"]) == (3, 1, 1, 1)
    assert state["P1"]["classes"]["macrophage"]["confirmed"] == 1  # the relabelled hemophagocyte
    assert state["P1"]["reviewers"] == ["dr a"]
    # a new session (reviewing resumes) sees the same verdicts, from review.jsonl alone
    again = {i["id"]: i for i in _get(_client(scanned), "/api/suggestions?status=reviewed")["items"]}
    assert set(again) == {a["id"], b["id"]}
    lines = [json.loads(x) for x in (scanned / REVIEW_LOG).read_text().splitlines()]
    assert [x["verdict"] for x in lines] == ["accept", "relabel", "reject", "clear"]
    assert lines[0]["model_label"] == "hemophagocyte" and lines[0]["model_score"] > 0.9


def test_added_cells_tile_view_and_crops(scanned: Path) -> None:
    c = _client(scanned)
    item = _get(c, "/api/suggestions?status=all&limit=1")["items"][0]
    tile = _get(c, f"/api/tile/{item['id']}")
    assert (tile["width"], tile["height"], tile["readable"]) == (320, 288, True)
    assert [cell["label"] for cell in tile["cells"]] == ["rbc", "macrophage", "hemophagocyte"]
    assert [len(cell["engulfed"]) for cell in tile["cells"]] == [0, 0, 3]
    added = _post(c, "/api/add", {"sample": tile["sample"], "tile": tile["tile"], "box": [200, 20, 300, 120]})
    assert added["added"] and added["final_label"] == "hemophagocyte" and added["id"].startswith("a")
    relabelled = _post(c, "/api/verdict", {"id": added["id"], "verdict": "relabel", "label": "macrophage"})
    assert relabelled["final_label"] == "macrophage" and relabelled["box"] == [200, 20, 300, 120]
    assert [a["id"] for a in _get(c, f"/api/tile/{item['id']}")["added"]] == [added["id"]]
    assert _get(c, "/api/state")["samples"][0]["added"] == 1
    for url in (f"/api/crop/{item['id']}?t={TOKEN}", f"/api/crop/{added['id']}?t={TOKEN}",
                f"/api/tile-picture/{item['id']}?t={TOKEN}"):  # fmt: skip
        r = c.get(url)
        assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
        assert cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR) is not None
    _post(c, "/api/verdict", {"id": added["id"], "verdict": "clear"})
    assert _get(c, "/api/state")["samples"][0]["added"] == 0
    assert _post(c, "/api/add", {"sample": "P1", "tile": "nope.png", "box": [1, 1, 5, 5]}, 400)


def test_two_reviewers_on_one_folder_see_each_others_verdicts(scanned: Path) -> None:
    a, b = _client(scanned, "dr a"), _client(scanned, "dr b")
    ids = [i["id"] for i in _get(a, "/api/suggestions?status=all")["items"]]
    for i, item_id in enumerate(ids):
        _post(a if i % 2 else b, "/api/verdict", {"id": item_id, "verdict": "reject"})
    assert _get(a, "/api/suggestions?status=pending")["total"] == 0
    assert sorted(_get(b, "/api/state")["samples"][0]["reviewers"]) == ["dr a", "dr b"]
    assert len(ReviewLog(scanned).latest()) == 10


def test_a_folder_being_scanned_is_read_as_it_stands(hemophagocyte_model, tmp_path: Path) -> None:
    scan = scan_folder(hemophagocyte_model, tmp_path, {"P1": 2})
    session = ReviewSession(scan, "dr a")
    assert len(session.index.suggestions) == 4
    with open(scan / "detections.jsonl", "a") as f:  # lines of a tile whose row is not committed
        f.write((scan / "detections.jsonl").read_text().splitlines()[0].replace("field_000", "field_new") + "\n")
    session.refresh(force=True)
    assert len(session.index.suggestions) == 4  # only committed tiles count
    scan_folder(hemophagocyte_model, tmp_path, {"P1": 3})  # the scan goes on (resumes)
    session.refresh(force=True)
    assert len(session.index.suggestions) == 6
    assert session.state()["scan_running"] is False
    with OutputLock(scan):  # what a running scan holds: shown, never taken by the review
        assert session.state()["scan_running"] is True

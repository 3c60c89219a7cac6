"""End to end in a real headless browser (Playwright driving an installed Chromium): 100
suggestions reviewed with the keyboard alone, a missed cell added by drawing on the tile.

Prints how long each key took until its verdict was saved and until the next crop was shown
(a measurement, not an assertion: timing depends on the machine). Screenshots go to
``$HEMOSCAN_SCREENSHOTS`` when set. Skipped where no Chromium is installed.
"""

from __future__ import annotations

import os
import shutil
import statistics
import threading
import time
from pathlib import Path

import pytest

from hemoscan.review.index import ReviewIndex
from hemoscan.review.log import ReviewLog
from hemoscan.review.server import ReviewSession, bind, create_app
from tests.review.conftest import scan_folder

KEYS = "arhmox"


def _chromium() -> str | None:
    for name in (os.environ.get("HEMOSCAN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and (path := shutil.which(name)):
            return path
    return None


@pytest.fixture
def browser():  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set HEMOSCAN_CHROMIUM)")
    with sync_api.sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        except Exception as e:  # noqa: BLE001 - a browser that cannot start here: say why
            pytest.skip(f"Chromium at {executable} does not start: {e}")
        yield b
        b.close()


@pytest.fixture
def server(hemophagocyte_model, tmp_path: Path):  # type: ignore[no-untyped-def]
    import uvicorn

    scan = scan_folder(hemophagocyte_model, tmp_path, {"P1": 30, "P2": 20})  # 100 suggestions
    session = ReviewSession(scan, "dr keyboard")
    app = create_app(session)
    sock = bind(0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(200):
        if server.started:
            break
        time.sleep(0.05)
    yield scan, f"http://127.0.0.1:{sock.getsockname()[1]}/"
    server.should_exit = True
    thread.join(10)


def _expected(label: str, key: str) -> tuple[str, str | None]:
    named = {"h": "hemophagocyte", "m": "macrophage", "o": "other_cell", "x": "artefact"}
    if key == "a" or named.get(key) == label:
        return "accept", label
    if key == "r":
        return "reject", None
    return "relabel", named[key]


def test_a_hundred_suggestions_reviewed_with_the_keyboard(browser, server) -> None:  # type: ignore[no-untyped-def]
    scan, url = server
    shots = Path(os.environ.get("HEMOSCAN_SCREENSHOTS") or scan.parent / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    # the page's CSP forbids eval, which Playwright's wait_for_function needs
    page = browser.new_page(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    page.goto(url)
    page.wait_for_function("document.getElementById('crop').dataset.shown !== undefined")
    page.wait_for_selector("#progress-table tr")
    page.screenshot(path=str(shots / "1-first-suggestion.png"))
    order = page.evaluate("S.items.map((it) => [it.id, it.label])")
    assert len(order) == 100
    expected = {}
    for i, (item_id, label) in enumerate(order):
        key = KEYS[i % len(KEYS)]
        if label == "hemophagocyte" and key == "a" and i % 4 == 0:  # fix the engulfed counts first
            page.keyboard.press("1")
            page.keyboard.press("Shift+Digit2")
        page.keyboard.press(key)
        page.wait_for_function(f"window.hemoscanTimings.length > {i} && window.hemoscanTimings[{i}].t_saved !== null "
                               f"&& window.hemoscanTimings[{i}].t_shown !== null")  # fmt: skip
        expected[item_id] = (*_expected(label, key), label == "hemophagocyte" and key == "a" and i % 4 == 0)
        if i == 20:
            page.screenshot(path=str(shots / "2-after-20-verdicts.png"))
    timings = page.evaluate("window.hemoscanTimings")
    assert [t["id"] for t in timings] == [item_id for item_id, _ in order]
    assert not [t for t in timings if t.get("failed")]
    assert [t["next"] for t in timings[:-1]] == [item_id for item_id, _ in order[1:]]  # the next crop
    saved = [t["t_saved"] - t["t_key"] for t in timings]
    shown = [t["t_shown"] - t["t_key"] for t in timings[:-1]]
    print(f"\n100 keyboard verdicts: saved after median {statistics.median(saved):.1f} ms "
          f"(max {max(saved):.1f}, {sum(s <= 200 for s in saved)}/100 within 200 ms); next crop shown "
          f"after median {statistics.median(shown):.1f} ms (max {max(shown):.1f}, "
          f"{sum(s <= 200 for s in shown)}/99 within 200 ms)")  # fmt: skip
    state = ReviewLog(scan).latest()
    assert set(state) == set(expected)
    index = ReviewIndex(scan)
    for item_id, (verdict, label, edited) in expected.items():
        v = state[item_id]
        assert (v.verdict, v.label, v.reviewer) == (verdict, label, "dr keyboard"), item_id
        model = index.by_id[item_id].detection.engulfed
        if label == "hemophagocyte" and model is not None:
            want = {"rbc": 3, "nucleated": 0, "platelet": 0} if edited else {k: model[k] for k in ("rbc", "nucleated", "platelet")}
            assert v.engulfed == want
    page.wait_for_function("[...document.querySelectorAll('#progress-table tr')].every((tr) => tr.textContent.includes('✓'))",
                           timeout=20000)  # every sample's review complete  # fmt: skip
    page.screenshot(path=str(shots / "3-all-reviewed.png"))

    # undo with the keyboard: the last verdict is withdrawn
    last = order[-1][0]
    page.keyboard.press("u")
    page.wait_for_function(f"S.items.find((it) => it.id === '{last}').state === 'pending'")
    assert last not in ReviewLog(scan).latest()

    # the whole tile, and a missed hemophagocyte drawn on it
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("t")
    page.wait_for_selector("#tileview.open")
    page.wait_for_function("document.getElementById('tileimg').complete")
    box = page.locator("#tilesvg").bounding_box()
    zoom = page.evaluate("S.tile.zoom * S.tile.factor")  # tile pixels -> screen pixels
    page.mouse.move(box["x"] + 250 * zoom, box["y"] + 95 * zoom)
    page.mouse.down()
    page.mouse.move(box["x"] + 290 * zoom, box["y"] + 130 * zoom, steps=4)
    page.mouse.move(box["x"] + 305 * zoom, box["y"] + 145 * zoom, steps=4)
    page.mouse.up()
    page.wait_for_function("S.tile && S.tile.added.length === 1")
    page.screenshot(path=str(shots / "4-tile-with-added-cell.png"))
    page.keyboard.press("Escape")
    (added,) = [v for v in ReviewLog(scan).latest().values() if v.added]
    assert added.label == "hemophagocyte" and added.reviewer == "dr keyboard"
    assert added.box == pytest.approx((250, 95, 305, 145), abs=2)
    page.wait_for_function("document.getElementById('progress-table').textContent.includes('1 added')")
    assert "39/40" in page.inner_text("#progress-table")  # the undone verdict is pending again
    page.screenshot(path=str(shots / "5-added-cell-selected.png"))

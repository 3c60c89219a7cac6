"""The review page: a small Starlette app served by uvicorn on 127.0.0.1 only.

:class:`ReviewSession` holds what the page works on (the :class:`ReviewIndex`, the verdicts in
force, the pictures); :func:`create_app` exposes it as JSON and JPEG under ``/api`` and serves
one self-contained page (``page.html``: inline CSS and JavaScript, no remote asset).

Every ``/api`` request must carry the session's random token (header ``X-Hemoscan-Token``, or
``t=`` in an image URL) and a ``Host`` of ``127.0.0.1`` or ``localhost``: another web page the
reviewer has open cannot read or write verdicts, even through DNS rebinding.

The folder may be scanned while it is reviewed: the page reads committed tiles only, takes no
lock, notices (at most every 2 s) when the scan has written more, and shows that a scan holds
the folder. Verdicts other reviewers append to ``review.jsonl`` are read in as they come.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from hemoscan.datamodel import REVIEWED_CLASSES, Detection, detection_id
from hemoscan.errors import HemoscanError
from hemoscan.io.output_lock import scan_running
from hemoscan.review.images import CROP_SIDE, ReviewImages
from hemoscan.review.index import ReviewIndex
from hemoscan.review.log import (
    ReviewError,
    ReviewLog,
    Verdict,
    apply_verdicts,
    check_engulfed,
    new_added_id,
)
from hemoscan.review.status import outcome, review_status

HOST = "127.0.0.1"
DEFAULT_PORT = 8765
PAGE_LIMIT = 200
#: How often at most the scan folder is checked for new tiles.
REFRESH_SECONDS = 2.0


def _verdict_json(v: Verdict | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {"verdict": v.verdict, "label": v.label, "engulfed": v.engulfed,
            "reviewer": v.reviewer, "time": v.time}  # fmt: skip


def _box(d: Detection) -> list[float]:
    return [round(d.x1, 2), round(d.y1, 2), round(d.x2, 2), round(d.y2, 2)]


class ReviewSession:
    """One reviewer's session on one scan folder (thread-safe)."""

    def __init__(self, scan_dir: str | Path, reviewer: str) -> None:
        if not reviewer.strip():
            raise ReviewError("a reviewer name is needed (--reviewer NAME)")
        self.scan_dir = Path(scan_dir)
        self.reviewer = reviewer.strip()
        self.log = ReviewLog(self.scan_dir)
        self.verdicts: dict[str, Verdict] = {}
        self._lock = threading.RLock()
        self._checked = 0.0
        self.index = ReviewIndex(self.scan_dir)
        self.images = ReviewImages(self.index.base_dirs())
        self._orders: dict[str, list[str]] = {}
        self.refresh(force=True)

    # ------------------------------------------------------------------ state
    def refresh(self, force: bool = False) -> None:
        """Read verdicts appended since the last call; rebuild the index when the scan wrote
        more (at most every :data:`REFRESH_SECONDS`, or now with ``force``)."""
        with self._lock:
            new = list(self.log.read(self.log.end))
            apply_verdicts(self.verdicts, new)
            if any(v.added for v in new):
                self._orders.clear()  # the list of added cells changed
            now = time.monotonic()
            if force or now - self._checked >= REFRESH_SECONDS:
                self._checked = now
                if self.index.stale():
                    self.index = ReviewIndex(self.scan_dir)
                    self._orders.clear()

    def _order(self, sort: str) -> list[str]:
        """Every reviewable id (suggestions, then added cells) in ``sort`` order."""
        ids = [s.id for s in self.index.suggestions]
        if sort == "score":
            by = self.index.by_id
            ids = sorted(ids, key=lambda i: -by[i].detection.score)
        added = [i for i, v in self.verdicts.items() if v.added and (v.sample, v.tile) in self.index.tiles]
        return ids + added

    def _added_detection(self, v: Verdict) -> Detection:
        assert v.box is not None and v.label is not None
        return Detection(v.label, 1.0, *v.box)

    def locate(self, item_id: str) -> tuple[str, str, Detection]:
        """``(sample, tile, detection)`` of a suggestion or added cell."""
        s = self.index.by_id.get(item_id)
        if s is not None:
            return s.sample, s.tile, s.detection
        v = self.verdicts.get(item_id)
        if v is not None and v.added:
            return v.sample, v.tile, self._added_detection(v)
        raise KeyError(item_id)

    def item(self, item_id: str, pos: int = -1) -> dict[str, Any]:
        s = self.index.by_id.get(item_id)
        v = self.verdicts.get(item_id)
        if s is not None:
            o = outcome(s, v)
            det = s.detection
            return {"id": s.id, "pos": pos, "sample": s.sample, "tile": s.tile, "added": False,
                    "label": det.label, "score": round(det.score, 4), "box": _box(det),
                    "engulfed": det.engulfed, "verdict": _verdict_json(v), "state": o.state,
                    "final_label": o.label, "final_engulfed": o.engulfed}  # fmt: skip
        if v is None or not v.added:
            raise KeyError(item_id)
        return {"id": v.id, "pos": pos, "sample": v.sample, "tile": v.tile, "added": True,
                "label": None, "score": None, "box": list(v.box or ()), "engulfed": None,
                "verdict": _verdict_json(v), "state": "added", "final_label": v.label,
                "final_engulfed": v.engulfed}  # fmt: skip

    def page(self, sample: str = "", label: str = "", status: str = "all", min_score: float = 0.0,
             max_score: float = 1.0, sort: str = "tile", after: int = -1, before: int | None = None,
             limit: int = PAGE_LIMIT) -> dict[str, Any]:  # fmt: skip
        """One page of the filtered list: items after position ``after`` (or the ``limit``
        items before ``before``), the filtered total and how many come before the page."""
        self.refresh()
        with self._lock:
            order = self._orders.get(sort)
            if order is None:
                order = self._orders[sort] = self._order(sort)
            by = self.index.by_id

            def keep(item_id: str) -> bool:
                s = by.get(item_id)
                v = self.verdicts.get(item_id)
                if s is None:
                    if v is None or not v.added:
                        return False  # an added cell since cleared
                    return (label in ("", "added") and (not sample or v.sample == sample)
                            and status != "pending")  # fmt: skip
                if sample and s.sample != sample or label and s.detection.label != label:
                    return False
                if not min_score <= s.detection.score <= max_score:
                    return False
                reviewed = v is not None
                return status == "all" or (status == "pending") != reviewed

            positions = [p for p, i in enumerate(order) if keep(i)]
            if before is not None:
                chosen = [p for p in positions if p < before][-limit:]
            else:
                chosen = [p for p in positions if p > after][:limit]
            first = positions.index(chosen[0]) if chosen else len(positions)
            return {
                "total": len(positions),
                "first_index": first,
                "has_more": bool(chosen) and chosen[-1] != positions[-1],
                "items": [self.item(order[p], p) for p in chosen],
            }

    def state(self) -> dict[str, Any]:
        self.refresh()
        with self._lock:
            status = review_status(self.index, self.verdicts)
            samples = [status[s].to_dict() for s in self.index.samples if s in status]
        return {"reviewer": self.reviewer, "scan_dir": str(self.scan_dir),
                "scan_running": scan_running(self.scan_dir), "samples": samples,
                "unreadable_lines": self.log.unreadable, "classes": list(REVIEWED_CLASSES)}  # fmt: skip

    def tile(self, item_id: str) -> dict[str, Any]:
        """The whole tile around ``item_id``: its cells (in the frame of its detections) and how
        to place them on :meth:`tile_picture`."""
        self.refresh()
        with self._lock:
            sample, tile, _ = self.locate(item_id)
            entry = self.index.tiles[(sample, tile)]
            cells = []
            for n, det in enumerate(self.index.tile_detections(sample, tile)):
                did = detection_id(sample, tile, n)
                s = self.index.by_id.get(did)
                cells.append({"id": did if s else None, "label": det.label,
                              "score": round(det.score, 3), "box": _box(det),
                              "engulfed": [[*_box(c), c.label] for c in det.engulfed_cells],  # type: ignore[arg-type]
                              "state": outcome(s, self.verdicts.get(did)).state if s else None})  # fmt: skip
            added = [self.item(i) for i, v in self.verdicts.items()
                     if v.added and (v.sample, v.tile) == (sample, tile)]  # fmt: skip
        view = self.images.tile_view(tile)
        return {"sample": sample, "tile": tile, "width": entry.width, "height": entry.height,
                "readable": view is not None, "origin": [view.origin_x, view.origin_y] if view else [0, 0],
                "factor": view.factor if view else 1.0, "view_width": view.width if view else 0,
                "view_height": view.height if view else 0, "cells": cells, "added": added}  # fmt: skip

    def crop(self, item_id: str) -> bytes | None:
        with self._lock:
            _, tile, det = self.locate(item_id)
        return self.images.crop(tile, det)

    def tile_picture(self, item_id: str) -> bytes | None:
        with self._lock:
            _, tile, _ = self.locate(item_id)
        view = self.images.tile_view(tile)
        return view.jpeg if view else None

    # ------------------------------------------------------------------ writing
    def record(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Append the verdict ``payload`` asks for (``id``, ``verdict``, ``label``,
        ``engulfed``) and return the item as it now stands."""
        item_id = str(payload.get("id", ""))
        verdict = payload.get("verdict")
        label = payload.get("label")
        engulfed = payload.get("engulfed")
        with self._lock:
            self.refresh()
            s = self.index.by_id.get(item_id)
            if s is not None:
                det = s.detection
                if verdict == "relabel" and label == det.label:
                    verdict = "accept"
                if verdict == "accept":
                    label = det.label
                if verdict in ("accept", "relabel") and label == "hemophagocyte" and engulfed is None:
                    engulfed = {k: (det.engulfed or {}).get(k, 0) for k in ("rbc", "nucleated", "platelet")}
                v = Verdict(item_id, str(verdict), self.reviewer, s.sample, s.tile, label,
                            engulfed if label == "hemophagocyte" else None, det.label,
                            round(det.score, 5))  # fmt: skip
            else:
                old = self.verdicts.get(item_id)
                if old is None and item_id.startswith("a") and verdict == "add":  # undoing a removal
                    old = Verdict(item_id, "add", self.reviewer, str(payload.get("sample")),
                                  str(payload.get("tile")), label, engulfed,
                                  box=tuple(payload.get("box") or ()))  # type: ignore[arg-type]  # fmt: skip
                    if (old.sample, old.tile) not in self.index.tiles:
                        raise ReviewError(f"no scanned tile {old.tile!r} in sample {old.sample!r}")
                if old is None or not old.added:
                    raise KeyError(item_id)
                if verdict in ("add", "relabel", "accept"):
                    verdict, label = "add", label or old.label
                    if label == "hemophagocyte" and engulfed is None:
                        engulfed = old.engulfed
                v = Verdict(item_id, str(verdict), self.reviewer, old.sample, old.tile,
                            label if verdict == "add" else None,
                            engulfed if label == "hemophagocyte" and verdict == "add" else None,
                            box=old.box)  # fmt: skip
            self.log.append([v])
            self.refresh()
            if s is None and item_id not in self.verdicts:
                return {"id": item_id, "added": True, "state": "removed"}
            return self.item(item_id)

    def add(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Add a cell the model missed: ``sample``, ``tile``, ``box`` (frame of the tile's
        detections), ``label`` (default hemophagocyte) and ``engulfed``."""
        sample, tile = str(payload.get("sample", "")), str(payload.get("tile", ""))
        with self._lock:
            entry = self.index.tiles.get((sample, tile))
            if entry is None:
                raise ReviewError(f"no scanned tile {tile!r} in sample {sample!r}")
            box = payload.get("box")
            if not isinstance(box, list) or len(box) != 4:
                raise ReviewError(f"box must be [x1, y1, x2, y2], got {box!r}")
            label = payload.get("label") or "hemophagocyte"
            engulfed = payload.get("engulfed")
            if engulfed is not None:
                engulfed = check_engulfed(engulfed)
            v = Verdict(new_added_id(), "add", self.reviewer, sample, tile, label,
                        engulfed if label == "hemophagocyte" else None,
                        box=tuple(float(b) for b in box))  # type: ignore[arg-type]  # fmt: skip
            self.log.append([v])
            self.refresh()
            return self.item(v.id)


def _page_html(session: ReviewSession, token: str) -> str:
    config = {"token": token, "reviewer": session.reviewer, "scanDir": str(session.scan_dir),
              "cropSide": CROP_SIDE, "pageLimit": PAGE_LIMIT}  # fmt: skip
    blob = json.dumps(config).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    page = resources.files("hemoscan.review").joinpath("page.html").read_text(encoding="utf-8")
    return page.replace("/*CONFIG*/{}", blob, 1)


def create_app(session: ReviewSession, token: str | None = None):  # type: ignore[no-untyped-def]
    """The Starlette app of ``session``; ``token`` (random when ``None``) guards ``/api``."""
    token = token or secrets.token_urlsafe(24)

    def guarded(handler):  # type: ignore[no-untyped-def]
        async def endpoint(request: Request) -> Response:
            given = request.headers.get("x-hemoscan-token") or request.query_params.get("t")
            if not given or not secrets.compare_digest(given, token):
                return JSONResponse({"error": "missing or wrong session token"}, status_code=403)
            try:
                return await handler(request)
            except KeyError as e:
                return JSONResponse({"error": f"unknown id {e.args[0]!r}"}, status_code=404)
            except (ReviewError, ValueError, TypeError) as e:
                return JSONResponse({"error": str(e)}, status_code=400)
            except HemoscanError as e:  # a failed write: nothing was recorded
                return JSONResponse({"error": str(e)}, status_code=500)

        return endpoint

    def run(fn, *args):  # type: ignore[no-untyped-def]
        return run_in_threadpool(fn, *args)

    def jpeg(data: bytes | None) -> Response:
        if data is None:
            return JSONResponse({"error": "the picture cannot be read now"}, status_code=404)
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    async def index(request: Request) -> Response:
        return HTMLResponse(_page_html(session, token),
                            headers={"Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                                     "style-src 'unsafe-inline'; script-src 'unsafe-inline'"})  # fmt: skip

    async def state(request: Request) -> Response:
        return JSONResponse(await run(session.state))

    async def suggestions(request: Request) -> Response:
        q = request.query_params
        before = q.get("before")
        args = (q.get("sample", ""), q.get("label", ""), q.get("status", "all"),
                float(q.get("min_score") or 0), float(q.get("max_score") or 1), q.get("sort", "tile"),
                int(q.get("after", -1)), int(before) if before not in (None, "") else None,
                max(1, min(int(q.get("limit", PAGE_LIMIT)), 1000)))  # fmt: skip
        return JSONResponse(await run(session.page, *args))

    async def crop(request: Request) -> Response:
        return jpeg(await run(session.crop, request.path_params["id"]))

    async def tile(request: Request) -> Response:
        return JSONResponse(await run(session.tile, request.path_params["id"]))

    async def tile_picture(request: Request) -> Response:
        return jpeg(await run(session.tile_picture, request.path_params["id"]))

    async def verdict(request: Request) -> Response:
        return JSONResponse(await run(session.record, await _json(request)))

    async def add(request: Request) -> Response:
        return JSONResponse(await run(session.add, await _json(request)))

    async def _json(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ReviewError("the request body is not JSON") from None
        if not isinstance(body, dict):
            raise ReviewError("the request body must be a JSON object")
        return body

    routes = [
        Route("/", index),
        Route("/api/state", guarded(state)),
        Route("/api/suggestions", guarded(suggestions)),
        Route("/api/crop/{id}", guarded(crop)),
        Route("/api/tile/{id}", guarded(tile)),
        Route("/api/tile-picture/{id}", guarded(tile_picture)),
        Route("/api/verdict", guarded(verdict), methods=["POST"]),
        Route("/api/add", guarded(add), methods=["POST"]),
    ]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost"])]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.token = token
    return app


def bind(port: int | None) -> socket.socket:
    """A listening socket on 127.0.0.1: ``port``, or :data:`DEFAULT_PORT` and any free port if
    that one is taken when ``port`` is ``None``."""
    for candidate in ([port] if port is not None else [DEFAULT_PORT, 0]):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, candidate))
        except OSError as e:
            sock.close()
            if port is not None:
                raise ReviewError(f"cannot listen on {HOST}:{port} ({e.strerror}); try another --port") from None
            continue
        sock.listen(64)
        return sock
    raise ReviewError(f"cannot listen on {HOST}")  # pragma: no cover


def serve(app: Any, sock: socket.socket, ready: Iterable[Any] = ()) -> None:  # pragma: no cover
    """Serve ``app`` on ``sock`` until interrupted (Ctrl+C)."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    for callback in ready:
        threading.Timer(0.5, callback).start()
    server.run(sockets=[sock])


"""Scan on the workers of a Dask cluster: ``hemoscan scan ... --engine dask [--scheduler ADDR]``.

How a scan runs:

* **Chunks.** The client (the process running :func:`hemoscan.pipeline.scan`) cuts the work
  items still to scan into chunks of consecutive items (:data:`CHUNK_BATCHES` batches each)
  and submits them to the cluster, keeping at most :data:`IN_FLIGHT_PER_THREAD` chunks per
  worker thread submitted but not yet written, so memory stays flat on both sides however
  many tiles there are.
* **Workers.** Each chunk runs :func:`hemoscan.engines.local.scan_items` on a worker, the
  same per-tile work as the local engine. A worker receives the client's resolved
  :class:`~hemoscan.inference.spec.PredictorSpec` and builds its predictor from it once
  (:func:`worker_predictor`): the model is loaded from its folder, not pickled from the
  client. The folder is resolved on the client (shipped model names, ``HEMOSCAN_WEIGHTS_DIR``)
  to an absolute path, and the worker checks that its weights, config and quantization are
  the spec's. Settings are not resolved again on workers: they run on the client's device
  (``--device auto`` picks it on the client) with its batch size and thresholds.
* **Ordering.** Results stream back as chunks finish (``as_completed``), wait in a reorder
  buffer, and are handed to ``scan`` in input order; ``scan`` writes them (``ScanStore``,
  evidence, progress) exactly as for a local run.

**Identical outputs.** ``detections.jsonl`` is byte-identical to a local run's on the same
inputs and settings; ``tiles.csv`` too except its timing column ``ms``; ``summary.json``
except the timestamps ``provenance.started_at`` / ``finished_at``. (With ``batch_size`` above
1, a tile that fails to decode can shift batch boundaries differently than in a local run;
detections do not depend on which tiles share a batch beyond float rounding noise far below
the 2- and 5-decimal rounding of the outputs.)

**Evidence.** Workers send back detections, not pixels: for ``--save-overlays`` /
``--save-crops`` the client reads again the tiles that need an image (every scanned tile for
overlays; only tiles holding a macrophage or hemophagocyte for crops).

**Losing workers.** A chunk whose worker dies is run again by Dask on another worker (up to
the scheduler's ``distributed.scheduler.allowed-failures``; then :class:`EngineError`). Tiles
already written stay written; if the client itself dies, re-running the same command resumes
like any scan (``ScanStore`` skips finished tiles), with either engine.

**Requirements on a real cluster.** Every worker has the same hemoscan version installed and
sees the tiles and the model folder on the same paths as the client (a shared file system);
relative tile paths are read relative to the worker's working folder. Both are checked on the
workers before the scan starts.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import CancelledError
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hemoscan import __version__
from hemoscan.datamodel import TileResult
from hemoscan.engines.local import ScannedTile, scan_items
from hemoscan.errors import EngineError
from hemoscan.hardware import cuda_available, device_type
from hemoscan.inference.backends import model_for_backend
from hemoscan.inference.predictor import Predictor
from hemoscan.inference.spec import PredictorSpec
from hemoscan.io.sources import TileSource
from hemoscan.models.loading import CONFIG_FILE
from hemoscan.scan_spec import ScanSpec

if TYPE_CHECKING:  # dask.distributed is optional: imported where a cluster is used
    from distributed import Client

log = logging.getLogger(__name__)

#: Batches of ``batch_size`` items per chunk (one Dask task).
CHUNK_BATCHES = 4
#: Chunks submitted and not yet written, per worker thread of the cluster.
IN_FLIGHT_PER_THREAD = 2
#: Seconds to wait for the scheduler at ``--scheduler ADDRESS``.
CONNECT_TIMEOUT_S = 10.0
#: Predictors kept per worker process (one per model and settings).
_CACHED_PREDICTORS = 2


# --- worker side -------------------------------------------------------------------------

_predictors: OrderedDict[PredictorSpec, Predictor] = OrderedDict()
_predictors_lock = threading.Lock()


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _build_predictor(spec: PredictorSpec) -> Predictor:
    if device_type(spec.device) == "cuda" and not cuda_available():
        raise EngineError(
            f"worker {_worker_name()} has no CUDA GPU, but the client resolved the device "
            f"{spec.device!r}; scan with --device cpu"
        )
    model = model_for_backend(spec.model_folder, spec.backend)
    mismatch = spec.mismatch(model)
    if mismatch:
        raise EngineError(
            f"worker {_worker_name()}: {mismatch}; every worker must see the client's model "
            "folder"
        )
    return Predictor(model, spec)


def worker_predictor(spec: PredictorSpec) -> Predictor:
    """The predictor for ``spec`` in this process, built (model loaded) on first use only."""
    with _predictors_lock:
        predictor = _predictors.get(spec)
        if predictor is None:
            predictor = _predictors[spec] = _build_predictor(spec)
            while len(_predictors) > _CACHED_PREDICTORS:
                _predictors.popitem(last=False)
        _predictors.move_to_end(spec)
        return predictor


def scan_chunk(spec: PredictorSpec, items: list[TileSource]) -> list[TileResult]:
    """The Dask task: scan ``items`` with this worker's predictor; one result per item."""
    predictor = worker_predictor(spec)
    return [tile.result for tile in scan_items(predictor, items)]


def _probe(paths: Sequence[str]) -> dict[str, Any]:
    """Run on every worker before a scan: its hemoscan version, folder, and missing paths."""
    return {
        "version": __version__,
        "cwd": os.getcwd(),
        "missing": [p for p in paths if not os.path.exists(p)],
    }


# --- client side -------------------------------------------------------------------------


@contextmanager
def dask_client(
    scheduler: str | None = None, n_workers: int = 2, timeout: float | None = None
) -> Iterator[Client]:
    """A client of the Dask scheduler at ``scheduler``, or of a new local cluster of
    ``n_workers`` processes with one thread each; the local cluster is closed on exit.

    Raises :class:`EngineError` when dask.distributed is not installed or no scheduler answers
    at ``scheduler`` within ``timeout`` seconds (default :data:`CONNECT_TIMEOUT_S`).
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise EngineError(
            "the dask engine needs dask.distributed: pip install 'hemoscan[dask]'"
        ) from None
    if scheduler is None:
        with (
            LocalCluster(
                n_workers=max(1, n_workers),
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # any free port: never clashes with another cluster
            ) as cluster,
            Client(cluster, set_as_default=False) as client,
        ):
            yield client
        return
    try:
        client = Client(scheduler, timeout=timeout or CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, ValueError, TimeoutError) as e:
        raise EngineError(
            f"no Dask scheduler reachable at {scheduler!r}: {e}. Start one with `dask scheduler` "
            "and workers with `dask worker ADDRESS`, or leave out --scheduler for a local cluster"
        ) from None
    with client:
        yield client


def check_workers(client: Client, paths: Sequence[str]) -> None:
    """Check, on every worker now connected, hemoscan's version and that ``paths`` exist.

    Waits for a first worker if there is none yet (e.g. batch jobs still queued). Raises
    :class:`EngineError` naming the worker and what to fix.
    """
    if not client.nthreads():
        log.warning("waiting for a first Dask worker to join %s", client.scheduler.address)
        client.wait_for_workers(1)
    try:
        answers = client.run(_probe, list(paths))
    except Exception as e:  # noqa: BLE001 - whatever a worker failed with, it cannot scan
        raise EngineError(
            f"the Dask workers cannot run hemoscan ({e!r}); install hemoscan {__version__} "
            "in every worker's environment"
        ) from None
    here = os.getcwd()
    for worker, answer in sorted(answers.items()):
        if answer["version"] != __version__:
            raise EngineError(
                f"worker {worker} runs hemoscan {answer['version']}, this client {__version__}; "
                "install the same version everywhere"
            )
        if answer["missing"]:
            raise EngineError(
                f"worker {worker} cannot see {answer['missing'][0]!r} (its working folder is "
                f"{answer['cwd']}, this one is {here}). Workers must see the tiles and the model "
                f"on the same paths (a shared file system): give absolute paths, or start the "
                f"workers in {here}"
            )


def scan_on_dask(items: Iterable[TileSource], spec: ScanSpec) -> Iterator[ScannedTile]:
    """Scan ``items`` on the cluster of ``spec.options.scheduler`` (or a local one of
    ``spec.options.workers`` processes); yield one ``ScannedTile`` per item, in input order.

    ``items`` are streamed: only the chunks in flight are held. The workers build their
    predictors from ``spec.predictor``. The tiles' images stay on the workers
    (``ScannedTile.image`` is ``None``). No cluster is started or contacted when there is
    nothing to scan.
    """
    items = iter(items)
    first = next(items, None)
    if first is None:
        return
    predictor = spec.predictor
    if not (Path(predictor.model_folder) / CONFIG_FILE).is_file():
        raise EngineError(
            f"model {predictor.model_name!r} has no model folder ({predictor.model_folder}/"
            f"{CONFIG_FILE} not found): the dask engine loads the model on each worker by name "
            "or folder"
        )
    size = CHUNK_BATCHES * predictor.batch_size
    rest = itertools.chain([first], items)
    chunks = iter(lambda: list(itertools.islice(rest, size)), [])
    with dask_client(spec.options.scheduler, n_workers=spec.options.workers) as client:
        check_workers(client, [first.path, predictor.model_folder])
        for chunk, results in _results_in_order(client, predictor, chunks):
            for item, result in zip(chunk, results, strict=True):
                yield ScannedTile(item, result, None)


def _window(client: Client) -> int:
    """Chunks to keep submitted and not yet written: a few per worker thread."""
    return IN_FLIGHT_PER_THREAD * max(1, sum(client.nthreads().values()))


def _results_in_order(
    client: Client, spec: PredictorSpec, chunks: Iterator[list[TileSource]]
) -> Iterator[tuple[list[TileSource], list[TileResult]]]:
    """Each chunk with its results, in chunk order, with a bounded number of chunks in flight
    (``chunks`` is consumed only as far as the window needs)."""
    # lazy: dask.distributed is the optional `dask` extra; the caller already checked it is there
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    run = uuid.uuid4().hex[:8]
    finished = as_completed(loop=client.loop)
    index_of: dict[str, int] = {}
    in_flight: dict[int, list[TileSource]] = {}
    ready: dict[int, list[TileResult]] = {}  # the reorder buffer
    submitted = written = 0
    exhausted = False
    try:
        while True:
            window = _window(client)
            while not exhausted and submitted < written + window:
                chunk = next(chunks, None)
                if chunk is None:
                    exhausted = True
                    break
                future = client.submit(scan_chunk, spec, chunk, key=f"hemoscan-{run}-{submitted}")
                index_of[future.key] = submitted
                in_flight[submitted] = chunk
                finished.add(future)
                submitted += 1
            if written == submitted:
                return
            future = next(finished)
            index = index_of.pop(future.key)
            try:
                ready[index] = future.result()
            except KilledWorker as e:
                raise EngineError(
                    f"Dask workers died running tiles {in_flight[index][0].path} ...: {e}. Tiles "
                    "written so far are kept: re-run the same command to resume"
                ) from None
            except CancelledError as e:
                raise EngineError(
                    f"the Dask cluster dropped the scan ({e!r}). Tiles written so far are kept: "
                    "re-run the same command to resume"
                ) from None
            future.release()
            while written in ready:
                yield in_flight.pop(written), ready.pop(written)
                written += 1
    finally:
        finished.clear()

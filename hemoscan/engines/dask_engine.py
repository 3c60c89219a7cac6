"""Scan on the workers of a Dask cluster: ``hemoscan scan ... --engine dask [--scheduler ADDR]``.

How a scan runs:

* **Chunks.** The client (the process running :func:`hemoscan.pipeline.scan`) cuts the work
  items still to scan into chunks of consecutive items (:data:`CHUNK_BATCHES` batches each)
  and submits them to the cluster, keeping at most :data:`IN_FLIGHT_PER_THREAD` chunks per
  worker thread submitted but not yet written, so memory stays flat on both sides however
  many tiles there are.
* **Workers.** Each chunk runs :func:`hemoscan.pipeline.scan_items` on a worker, the same
  per-tile work as the local engine. A worker process builds its predictor once and keeps it
  (:func:`worker_predictor`): the model is loaded from its folder, not pickled from the
  client. The folder is resolved on the client (shipped model names, ``HEMOSCAN_WEIGHTS_DIR``)
  to an absolute path, and the worker checks that its weights have the sha256 the client
  verified and give the same thresholds.
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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hemoscan import __version__
from hemoscan.datamodel import TileResult
from hemoscan.errors import EngineError
from hemoscan.io.sources import TileSource

if TYPE_CHECKING:
    from distributed import Client

    from hemoscan.inference.predictor import Predictor
    from hemoscan.models.export import OnnxModel
    from hemoscan.models.loading import LoadedModel
    from hemoscan.pipeline import ScannedTile, ScanOptions

log = logging.getLogger(__name__)

#: Batches of ``batch_size`` items per chunk (one Dask task).
CHUNK_BATCHES = 4
#: Chunks submitted and not yet written, per worker thread of the cluster.
IN_FLIGHT_PER_THREAD = 2
#: Seconds to wait for the scheduler at ``--scheduler ADDRESS``.
CONNECT_TIMEOUT_S = 10.0
#: Predictors kept per worker process (one per model and settings).
_CACHED_PREDICTORS = 2


@dataclass(frozen=True)
class WorkerModel:
    """What a worker needs to build the client's predictor (small: sent with each chunk).

    ``folder`` is the model folder as an absolute path; ``sha256`` the weights' sha256 the
    client verified; ``thresholds`` the client's per-class thresholds and ``quantization`` its
    export's quantization (``None``: full precision), both checked on the worker.
    The rest are :class:`~hemoscan.inference.predictor.Predictor` settings.
    """

    folder: str
    sha256: str
    thresholds: tuple[tuple[str, float], ...]
    backend: str
    device: str
    batch_size: int
    conf: float | None
    tile_size: int
    overlap: int
    scale: float
    quantization: str | None = None

    @classmethod
    def of(
        cls, model: LoadedModel | OnnxModel, predictor: Predictor, options: ScanOptions
    ) -> WorkerModel:
        return cls(
            folder=os.path.abspath(model.folder),
            sha256=model.sha256,
            thresholds=tuple(predictor.thresholds.items()),
            backend=options.backend,
            device=options.device,
            batch_size=predictor.batch_size,
            conf=options.conf,
            tile_size=predictor.tile_size,
            overlap=predictor.overlap,
            scale=predictor.scale,
            quantization=predictor.quantization,
        )


# --- worker side -------------------------------------------------------------------------

_predictors: OrderedDict[WorkerModel, Predictor] = OrderedDict()
_predictors_lock = threading.Lock()


def _worker_name() -> str:
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def _build_predictor(spec: WorkerModel) -> Predictor:
    from hemoscan.inference.predictor import Predictor

    if spec.backend == "onnx":
        from hemoscan.models.export import load_onnx_model

        model: LoadedModel | OnnxModel = load_onnx_model(spec.folder)
    else:
        from hemoscan.models.loading import load_model

        model = load_model(spec.folder)
    if model.sha256 != spec.sha256:
        raise EngineError(
            f"worker {_worker_name()}: {spec.folder} holds weights {model.sha256[:16]}..., not "
            f"the {spec.sha256[:16]}... the client loaded; every worker must see the same model"
        )
    predictor = Predictor(
        model,
        device=spec.device,
        batch_size=spec.batch_size,
        conf=spec.conf,
        tile_size=spec.tile_size,
        overlap=spec.overlap,
        scale=spec.scale,
        backend=spec.backend,
    )
    if tuple(predictor.thresholds.items()) != spec.thresholds:
        raise EngineError(
            f"worker {_worker_name()}: {spec.folder}/config.json gives other thresholds than "
            "the client's; every worker must see the same model folder"
        )
    if predictor.quantization != spec.quantization:
        raise EngineError(
            f"worker {_worker_name()}: {spec.folder} holds an export quantized as "
            f"{predictor.quantization!r}, not {spec.quantization!r} as the client's; every worker "
            "must see the same model folder"
        )
    return predictor


def worker_predictor(spec: WorkerModel) -> Predictor:
    """The predictor for ``spec`` in this process, built (model loaded) on first use only."""
    with _predictors_lock:
        predictor = _predictors.get(spec)
        if predictor is None:
            predictor = _predictors[spec] = _build_predictor(spec)
            while len(_predictors) > _CACHED_PREDICTORS:
                _predictors.popitem(last=False)
        _predictors.move_to_end(spec)
        return predictor


def scan_chunk(spec: WorkerModel, items: list[TileSource]) -> list[TileResult]:
    """The Dask task: scan ``items`` with this worker's predictor; one result per item."""
    from hemoscan.pipeline import scan_items

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


def scan_on_dask(
    items: Iterable[TileSource],
    predictor: Predictor,
    model: LoadedModel | OnnxModel,
    options: ScanOptions,
) -> Iterator[ScannedTile]:
    """Scan ``items`` on the cluster of ``options.scheduler`` (or a local one of
    ``options.workers`` processes); yield one ``ScannedTile`` per item, in input order.

    ``items`` are streamed: only the chunks in flight are held. ``predictor`` and ``model``
    are the client's: they define what the workers load. The tiles' images stay on the
    workers (``ScannedTile.image`` is ``None``). No cluster is started or contacted when there
    is nothing to scan.
    """
    from hemoscan.models.loading import CONFIG_FILE
    from hemoscan.pipeline import ScannedTile

    items = iter(items)
    first = next(items, None)
    if first is None:
        return
    if not (model.folder / CONFIG_FILE).is_file():
        raise EngineError(
            f"model {model.config.name!r} has no model folder ({model.folder}/{CONFIG_FILE} "
            "not found): the dask engine loads the model on each worker by name or folder"
        )
    spec = WorkerModel.of(model, predictor, options)
    size = CHUNK_BATCHES * predictor.batch_size
    rest = itertools.chain([first], items)
    chunks = iter(lambda: list(itertools.islice(rest, size)), [])
    with dask_client(options.scheduler, n_workers=options.workers) as client:
        check_workers(client, [first.path, spec.folder])
        for chunk, results in _results_in_order(client, spec, chunks):
            for item, result in zip(chunk, results, strict=True):
                yield ScannedTile(item, result, None)


def _window(client: Client) -> int:
    """Chunks to keep submitted and not yet written: a few per worker thread."""
    return IN_FLIGHT_PER_THREAD * max(1, sum(client.nthreads().values()))


def _results_in_order(
    client: Client, spec: WorkerModel, chunks: Iterator[list[TileSource]]
) -> Iterator[tuple[list[TileSource], list[TileResult]]]:
    """Each chunk with its results, in chunk order, with a bounded number of chunks in flight
    (``chunks`` is consumed only as far as the window needs)."""
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

"""The trainer: ``train(config) -> RunResult``.

One run folder (``run.out``) holds ``resolved.yaml`` (the complete config), ``last.pt`` (a
checkpoint after every epoch, see :mod:`hemoscan_training.checkpoint`), ``results.csv`` and
``curves.png`` (see :mod:`hemoscan_training.results`) and ``best/``, a hemoscan model folder
(``load_model("RUN/best")``, written by :mod:`hemoscan_training.network`) holding the epoch
with the best validation metric (the last epoch when there is no validation set).

Exact resume: every crop is drawn from its own ``(seed, index)`` generator and the checkpoint
holds the model, optimizer, scheduler and global RNG states, so a run stopped after any epoch
and resumed computes the same losses and weights as one that never stopped (bitwise with
``run.deterministic`` and the same ``run.threads``).
"""

from __future__ import annotations

import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from .checkpoint import CHECKPOINT_FILE, load_checkpoint, rng_state, save_checkpoint, set_rng_state
from .config import (
    RESOLVED_FILE,
    ConfigError,
    TrainConfig,
    config_from_dict,
    read_yaml,
    resume_differences,
    write_resolved,
)
from .data import RangeSampler, worker_init
from .datasets import TrainData, build_data
from .distill import Distiller, distillation_loss
from .losses import detection_loss
from .network import BEST_DIR, build_model, save_best, set_train_mode
from .results import CURVES_FILE, LOSS_KEYS, ResultsLog, fmt, plot_curves, results_fields
from .validation import validate

Status = Literal["completed", "early_stopped", "time_budget", "aborted_nonfinite"]


@dataclass(frozen=True)
class RunResult:
    """How a call of :func:`train` ended.

    ``status``: ``completed`` (all epochs), ``early_stopped`` (patience ran out),
    ``time_budget`` (``schedule.time_budget_min`` reached) or ``aborted_nonfinite``
    (``optim.max_nonfinite_steps`` non-finite steps in a row; ``last.pt`` keeps the last
    good epoch). ``epochs_done``: epochs finished in this run folder so far.
    ``best_metric`` / ``best_epoch``: the selection metric of ``best/`` (NaN / -1 if none).
    ``rows``: ``results.csv`` as dicts of strings.
    """

    out: Path
    status: Status
    epochs_done: int
    best_metric: float
    best_epoch: int
    best_model: Path | None
    rows: list[dict[str, str]]


# --------------------------------------------------------------------------- schedule
def lr_lambda(warmup: int, total: int, floor: float = 0.02) -> Callable[[int], float]:
    """LR factor at optimizer step ``step``: linear warmup over ``warmup`` steps to 1, then a
    cosine from 1 down to ``floor`` at step ``total``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f



# --------------------------------------------------------------------------- run folder
def prepare_run_folder(cfg: TrainConfig, log: Callable[[str], None]) -> bool:
    """Check ``run.out`` against ``run.resume`` and write ``resolved.yaml``; return whether a
    checkpoint is to be resumed."""
    out = cfg.out
    ckpt, resolved = out / CHECKPOINT_FILE, out / RESOLVED_FILE
    if not cfg.run.resume:
        if ckpt.exists():
            raise ConfigError(f"run.out: {out} already holds a run ({CHECKPOINT_FILE}); "
                              "continue it with --resume or choose another --out")  # fmt: skip
        write_resolved(cfg, out)
        return False
    if resolved.exists():
        saved = config_from_dict(read_yaml(resolved))
        diff = resume_differences(saved, cfg)
        if diff:
            raise ConfigError(f"--resume: the config differs from the run's {resolved} in "
                              f"{', '.join(diff)}; resume with the same settings")  # fmt: skip
    if not ckpt.exists():
        log(f"no {CHECKPOINT_FILE} in {out}: starting from the beginning")
        write_resolved(cfg, out)
        return False
    if not resolved.exists():  # a run of the former train_detector.py
        write_resolved(cfg, out)
    return True


@contextmanager
def torch_settings(cfg: TrainConfig) -> Iterator[None]:
    """Threads and deterministic mode for the run, restored afterwards."""
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    cudnn = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.set_num_threads(cfg.run.threads)
    if cfg.run.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = cudnn


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    random.seed(seed)
    np.random.seed(seed)


def default_log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- training
def _progress(enabled: bool):  # type: ignore[no-untyped-def]
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("epoch {task.fields[epoch]}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  {task.fields[ips]} img/s"), TimeElapsedColumn(),
        disable=not enabled, transient=True,
    )  # fmt: skip


def train(cfg: TrainConfig, log: Callable[[str], None] = default_log) -> RunResult:
    """Train as ``cfg`` says (resuming ``run.out`` when ``run.resume``); see the module doc."""
    out = cfg.out
    out.mkdir(parents=True, exist_ok=True)
    resume = prepare_run_folder(cfg, log)
    with torch_settings(cfg):
        return _Run(cfg, resume, log).run()


@dataclass
class _EpochStats:
    """Mean losses over the finite steps of one epoch, skipped steps and training seconds."""

    means: dict[str, float]
    skipped: int
    train_s: float


class _NonFiniteAbort(Exception):
    pass


class _Run:
    """One call of :func:`train`: model, optimizer, schedule and data, set up or resumed."""

    def __init__(self, cfg: TrainConfig, resume: bool, log: Callable[[str], None]) -> None:
        self.cfg, self.log = cfg, log
        seed_everything(cfg.run.seed)
        self.device = torch.device(cfg.run.device)
        self.model, self.frozen, start = build_model(cfg)
        self.model.to(self.device)
        self.distiller = (
            Distiller(cfg, self.model, self.frozen, self.device) if cfg.distill.teacher else None
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(
            self.params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay
        )
        floor = cfg.schedule.final_lr_fraction
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lr_lambda(cfg.warmup_steps, cfg.total_steps, floor)
        )
        self.start_epoch, self.best, self.best_epoch = 0, -math.inf, -1
        self.bad_epochs, self.wall0, self.streak = 0, 0.0, 0
        if resume:
            self._load(cfg.out / CHECKPOINT_FILE)
        self.data: TrainData = build_data(cfg, int(getattr(self.model, "stride", 8)))
        n_train = sum(p.numel() for p in self.params)
        taught = ""
        if self.distiller is not None:
            shared = ", one shared backbone pass" if self.distiller.shared_backbone else ""
            taught = f"; taught by {cfg.distill.teacher}{shared}"
        log(
            f"model {cfg.model.architecture} ({start}{taught}): {n_train / 1e6:.2f} M trainable; "
            f"{self.data.summary}; epochs {self.start_epoch}..{cfg.schedule.epochs - 1} x "
            f"{cfg.steps_per_epoch} steps x {cfg.data.batch_size}"
        )
        self.results = ResultsLog(cfg.out, results_fields(cfg.schedule.eval_classes))

    # ------------------------------------------------------------------ checkpoints
    def _load(self, path: Path) -> None:
        ck = load_checkpoint(path)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"])
        self.start_epoch = ck["epoch"] + 1
        self.best, self.best_epoch = float(ck["best"]), int(ck["best_epoch"])
        self.bad_epochs, self.wall0 = int(ck["bad_epochs"]), float(ck["wall_s"])
        self.log(f"resumed from {path} at epoch {self.start_epoch}, best {fmt(self.best, '.4f')}")

    def _save(self, epoch: int, wall: float) -> None:
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "epoch": epoch,
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "wall_s": wall,
            "rng": rng_state(),
            "config": self.cfg.to_dict(),
        }
        save_checkpoint(self.cfg.out / CHECKPOINT_FILE, state)

    # ------------------------------------------------------------------ pieces
    def _loader(self) -> tuple[DataLoader, RangeSampler]:
        cfg = self.cfg
        sampler = RangeSampler(cfg.steps_per_epoch * cfg.data.batch_size)
        w = cfg.run.workers
        loader = DataLoader(
            self.data.dataset, batch_size=cfg.data.batch_size, sampler=sampler, num_workers=w,
            worker_init_fn=worker_init, multiprocessing_context="spawn" if w else None,
            persistent_workers=w > 0, prefetch_factor=4 if w else None,
        )  # fmt: skip
        return loader, sampler

    def _result(self, status: Status, epochs_done: int) -> RunResult:
        best = self.cfg.out / BEST_DIR
        metric = self.best if math.isfinite(self.best) else math.nan
        best_model = best if best.exists() else None
        rows = self.results.rows()
        return RunResult(
            self.cfg.out, status, epochs_done, metric, self.best_epoch, best_model, rows
        )

    def _metric(self, ap: dict[str, float]) -> float:
        """Mean AP50 of the ``best_metric`` classes that have a finite AP (NaN if none)."""
        vals = [ap.get(c, math.nan) for c in self.cfg.schedule.best_metric]
        vals = [v for v in vals if math.isfinite(v)]
        return float(np.mean(vals)) if vals else math.nan

    def _skip_step(self, epoch: int, step: int, loss: torch.Tensor) -> None:
        """Drop a step whose loss or gradient is not finite; the schedule still advances."""
        self.streak += 1
        self.log(f"epoch {epoch} step {step}: non-finite loss ({loss.item()}) or gradient, skipped")
        self.opt.zero_grad(set_to_none=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            self.sched.step()
        if self.streak >= self.cfg.optim.max_nonfinite_steps:
            self.log(
                f"{self.streak} consecutive non-finite steps: aborting; "
                f"{CHECKPOINT_FILE} keeps the last finished epoch"
            )
            raise _NonFiniteAbort

    def _losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The step's losses: ground truth (``heatmap``, ``size``, ``offset``), the teacher
        term (``distill``, 0 without a teacher) and their weighted total (``loss``)."""
        if self.distiller is None:
            parts = detection_loss(self.model(batch["image"]), batch)
            return {**parts, "distill": torch.zeros((), device=self.device)}
        outputs, taught = self.distiller.outputs(self.model, batch["image"])
        parts = detection_loss(outputs, batch)
        kd = distillation_loss(outputs, taught)
        d = self.cfg.distill
        return {**parts, "loss": d.gt_weight * parts["loss"] + d.weight * kd, "distill": kd}

    def _train_epoch(self, epoch: int, loader: DataLoader, progress) -> _EpochStats:  # type: ignore[no-untyped-def]
        cfg = self.cfg
        steps, batch_size, every = cfg.steps_per_epoch, cfg.data.batch_size, cfg.run.log_every
        set_train_mode(self.model, self.frozen)
        sums = dict.fromkeys(LOSS_KEYS, 0.0)
        n_ok = skipped = 0
        label = f"{epoch + 1}/{cfg.schedule.epochs}"
        task = progress.add_task("train", total=steps, epoch=label, loss="-", ips="-")
        t_epoch = t_log = time.perf_counter()
        for i, batch in enumerate(loader):
            if self.device.type != "cpu":
                batch = {k: v.to(self.device) for k, v in batch.items()}
            parts = self._losses(batch)
            finite = bool(torch.isfinite(parts["loss"]))
            if finite:
                self.opt.zero_grad(set_to_none=True)
                parts["loss"].backward()
                clip = cfg.optim.grad_clip or math.inf
                finite = bool(torch.isfinite(torch.nn.utils.clip_grad_norm_(self.params, clip)))
            progress.advance(task)
            if not finite:
                skipped += 1
                self._skip_step(epoch, i, parts["loss"])
                continue
            self.streak = 0
            self.opt.step()
            self.sched.step()
            n_ok += 1
            for k in sums:
                sums[k] += parts[k].item()
            now = time.perf_counter()
            ips = (i + 1) * batch_size / (now - t_epoch)
            progress.update(task, loss=f"{parts['loss'].item():.3f}", ips=f"{ips:.2f}")
            if (i + 1) % every == 0:
                ips, t_log = every * batch_size / (now - t_log), now
                self.log(
                    f"epoch {epoch} step {i + 1}/{steps} loss {parts['loss'].item():.3f} "
                    f"(hm {parts['heatmap'].item():.3f} size {parts['size'].item():.3f} "
                    f"off {parts['offset'].item():.3f} distill {parts['distill'].item():.3f}) "
                    f"lr {self.sched.get_last_lr()[0]:.2e} "
                    f"{ips:.2f} img/s"
                )
        progress.remove_task(task)
        means = {k: v / max(1, n_ok) for k, v in sums.items()}
        return _EpochStats(means, skipped, time.perf_counter() - t_epoch)

    def _end_epoch(self, epoch: int, stats: _EpochStats, wall: Callable[[], float]) -> None:
        """Validate, update the best/early-stopping state, then write the results row, the
        best model, the checkpoint and the curves, in that order."""
        cfg, val = self.cfg, self.data.val
        classes, eval_classes = cfg.model.classes, cfg.schedule.eval_classes
        ap = validate(self.model, val, classes, eval_classes, cfg.run.device) if val else {}
        metric = self._metric(ap)
        improved = not val or (
            math.isfinite(metric) and metric > self.best + cfg.schedule.min_delta
        )
        if improved:
            self.best = metric if val else self.best
            self.best_epoch, self.bad_epochs = epoch, 0
        else:
            self.bad_epochs += 1
        ips = cfg.steps_per_epoch * cfg.data.batch_size / stats.train_s
        now = wall()
        self.results.append({
            "epoch": str(epoch), "step": str((epoch + 1) * cfg.steps_per_epoch),
            **{k: fmt(stats.means[k], ".5f") for k in LOSS_KEYS},
            "lr": fmt(self.sched.get_last_lr()[0], ".3e"), "images_per_s": fmt(ips, ".2f"),
            "wall_s": fmt(now, ".0f"),
            **{f"ap50_{c}": fmt(ap.get(c, math.nan), ".4f") for c in eval_classes},
            "metric": fmt(metric, ".4f"), "best": fmt(self.best, ".4f"),
            "skipped_steps": str(stats.skipped),
        })  # fmt: skip
        if improved:
            save_best(self.model, cfg, epoch, metric)
        self._save(epoch, now)
        plot_curves(self.results.rows(), cfg.out / CURVES_FILE, eval_classes)
        aps = " ".join(f"{c} {ap[c]:.3f}" for c in eval_classes) if ap else "(no validation set)"
        at = f" (epoch {self.best_epoch})" if self.best_epoch >= 0 else ""
        self.log(
            f"epoch {epoch} done: loss {stats.means['loss']:.3f} {ips:.2f} img/s train "
            f"{stats.train_s:.0f}s; AP50 {aps}; metric {fmt(metric, '.3f')} "
            f"best {fmt(self.best, '.3f')}{at}"
        )

    def _stop(self, epoch: int, minutes: float) -> Status | None:
        s = self.cfg.schedule
        if self.data.val and s.patience and self.bad_epochs >= s.patience:
            self.log(
                f"no improvement for {self.bad_epochs} epochs: early stop; best epoch {self.best_epoch}"
            )
            return "early_stopped"
        if s.time_budget_min and minutes >= s.time_budget_min and epoch + 1 < s.epochs:
            self.log(
                f"time budget {s.time_budget_min} min reached after epoch {epoch} ({minutes:.1f} min): stopping"
            )
            return "time_budget"
        return None

    # ------------------------------------------------------------------ the loop
    def run(self) -> RunResult:
        cfg = self.cfg
        if cfg.schedule.patience and self.bad_epochs >= cfg.schedule.patience:
            self.log("this run stopped early before; nothing to do")
            return self._result("early_stopped", self.start_epoch)
        self.results.start(self.start_epoch)
        loader, sampler = self._loader()
        t_run = time.perf_counter()
        status: Status = "completed"
        epoch = self.start_epoch - 1
        with _progress(cfg.run.progress) as progress:
            for epoch in range(self.start_epoch, cfg.schedule.epochs):
                sampler.start = epoch * cfg.steps_per_epoch * cfg.data.batch_size
                try:
                    stats = self._train_epoch(epoch, loader, progress)
                except _NonFiniteAbort:
                    return self._result("aborted_nonfinite", epoch)
                self._end_epoch(epoch, stats, lambda: self.wall0 + time.perf_counter() - t_run)
                stop = self._stop(epoch, (time.perf_counter() - t_run) / 60)
                if stop:
                    status = stop
                    break
        self.log(f"done ({status}): {cfg.out}")
        return self._result(status, epoch + 1)

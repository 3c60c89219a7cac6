"""Train the default detector (CenterNet on EfficientNet-Lite0) on composed crops, on the CPU.

    python training/train_detector.py --out runs/NAME [--epochs 14 --steps-per-epoch 200]

Writes ``OUT/config.json`` (all arguments), ``OUT/last.pt`` every epoch (resume with
``--resume``), ``OUT/results.csv`` (losses, lr, speed, AP50 on the TXL-PBC dev fields)
and ``OUT/best`` (a hemoscan model folder, best mean of rbc and nucleated AP50 on the TXL-PBC
dev fields, which are held out of training; the val split is kept for reporting).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from .data import (
    CLASSES,
    MEAN,
    STD,
    ComposedCrops,
    RangeSampler,
    rescale,
    txl_part,
    worker_init,
)
from .evaluate_ap import ImageDetections, ImageTruth, ap_per_class
from hemoscan.inference.postprocess import decode_heatmaps, suppress_duplicates
from hemoscan.models import ModelConfig, create_model, save_model_folder

REPO = Path(__file__).resolve().parents[1]
EVAL_CLASSES = ("rbc", "platelet", "nucleated")
MAX_BAD_STEPS = 20


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--epochs", type=int, default=14)
    p.add_argument("--steps-per-epoch", type=int, default=200)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--crop", type=int, default=384)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "datasets")
    p.add_argument(
        "--time-budget-min",
        type=float,
        default=0.0,
        help="stop after the epoch crossing it (0: off)",
    )
    p.add_argument("--val-images", type=int, default=60, help="TXL-PBC dev fields")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--log-every", type=int, default=10)
    a = p.parse_args(argv)
    if a.crop % 32:
        p.error("--crop must be a multiple of 32")
    return a


# --------------------------------------------------------------------------- model & loss
FROZEN = (
    "backbone._conv_stem",
    "backbone._bn0",
    "backbone._blocks.0.",
    "backbone._blocks.1.",
    "backbone._blocks.2.",
)


def frozen_modules(model: nn.Module) -> list[nn.Module]:
    bb = model.backbone
    return [bb._conv_stem, bb._bn0, *bb._blocks[0:3]]


def set_train_mode(model: nn.Module) -> None:
    """Train mode, except the frozen stem and first 3 blocks (BN statistics stay ImageNet's)."""
    model.train()
    for m in frozen_modules(model):
        m.eval()


def focal_loss(
    logits: torch.Tensor,
    gt: torch.Tensor,
    neg_weight: torch.Tensor,
    alpha: float = 2.0,
    beta: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CenterNet's penalty-reduced focal loss over the batch, normalised by the positives."""
    pos = gt.eq(1).float()
    p = torch.sigmoid(logits)
    pos_loss = F.logsigmoid(logits) * (1 - p) ** alpha * pos
    neg_loss = (
        F.logsigmoid(-logits)
        * p**alpha
        * (1 - gt) ** beta
        * (1 - pos)
        * neg_weight[:, :, None, None]
    )
    n_pos = pos.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / n_pos.clamp(min=1.0), n_pos


def detection_loss(
    outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    heat, log_size, offset = outputs
    hm, n_pos = focal_loss(heat, batch["heatmap"], batch["neg_weight"])
    mask = batch["reg_mask"]
    denom = (mask.sum() * 2).clamp(min=1.0)
    size = (F.l1_loss(log_size, batch["log_size"], reduction="none") * mask).sum() / denom
    off = (F.l1_loss(offset, batch["offset"], reduction="none") * mask).sum() / denom
    return {"loss": hm + size + off, "heatmap": hm, "size": size, "offset": off}


def lr_lambda(warmup: int, total: int, floor: float = 0.02):  # type: ignore[no-untyped-def]
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return f


# --------------------------------------------------------------------------- validation
def load_val_set(
    data_root: Path, n: int, seed: int = 1234
) -> list[tuple[torch.Tensor, ImageTruth]]:
    """``n`` fixed TXL-PBC dev fields (held out of train for model selection) rescaled so red
    cells are ~40 px, normalised and padded."""
    items = txl_part(data_root / "txl-pbc", "dev")
    pick = sorted(
        np.random.default_rng(seed).choice(len(items), size=min(n, len(items)), replace=False)
    )
    out = []
    import cv2

    for k in pick:
        item = items[int(k)]
        img = cv2.cvtColor(cv2.imread(str(item.path)), cv2.COLOR_BGR2RGB)
        img, boxes = rescale(img, item.boxes, 40.0 / item.rbc_diameter)
        h, w = img.shape[:2]
        x = np.zeros((3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
        x[:, :h, :w] = ((img.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
        out.append((torch.from_numpy(x), ImageTruth(boxes[:, :4], boxes[:, 4].astype(np.int64))))
    return out


@torch.inference_mode()
def validate(model: nn.Module, val: list[tuple[torch.Tensor, ImageTruth]]) -> dict[str, float]:
    model.eval()
    thresholds = torch.full((len(CLASSES),), 0.01)
    preds = []
    for x, _ in val:
        heat, size, off = model(x[None])
        boxes, scores, labels = decode_heatmaps(heat[0], size[0], off[0], 8, thresholds, 1000)
        keep = suppress_duplicates(boxes, scores, labels, CLASSES, 0.5)
        preds.append(ImageDetections(boxes[keep], scores[keep], labels[keep]))
    return ap_per_class(preds, [t for _, t in val], {c: CLASSES.index(c) for c in EVAL_CLASSES})


# --------------------------------------------------------------------------- checkpoints
def rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:])}  # fmt: skip


def set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    np.random.set_state((s["numpy"][0], np.asarray(s["numpy"][1], np.uint32), *s["numpy"][2:]))


def model_config(args: argparse.Namespace) -> ModelConfig:
    return ModelConfig(
        name="hemoscan-lite0-v2", version="2.0.0", architecture="centernet_lite0", classes=CLASSES,
        rbc_diameter_px=40.0, tile_size=1024, overlap=256, default_threshold=0.3,
        description=(
            "CenterNet on ImageNet EfficientNet-Lite0 (Apache-2.0 wheel), trained on the CPU on "
            "composed crops: TXL-PBC train minus a dev split (MIT; PBC images CC BY 4.0), 4/5 of "
            "segpc-marrow (CC BY-NC-SA 4.0: non-commercial) and 2 of the 3 giemsa-macrophages "
            "hosts (GPL-2.0 data), plus procedural hosts. Hemophagocytes and engulfed cells are synthetic composites. "
            f"Training run: {args.out.name}."
        ),
    )  # fmt: skip


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(
        json.dumps(
            {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, indent=2
        )
        + "\n"
    )

    model = create_model("centernet_lite0", num_classes=len(CLASSES), pretrained_backbone=True)
    for name, p in model.named_parameters():
        if name.startswith(FROZEN):
            p.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)
    total = args.epochs * args.steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(args.steps_per_epoch, total))

    start_epoch, best = 0, -1.0
    if args.resume and (out / "last.pt").exists():
        ck = torch.load(out / "last.pt", weights_only=True)
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        set_rng_state(ck["rng"])
        start_epoch, best = ck["epoch"] + 1, ck["best"]
        log(f"resumed from {out / 'last.pt'} at epoch {start_epoch}, best {best:.4f}")

    ds = ComposedCrops(args.data_root, crop=args.crop, seed=args.seed)
    sampler = RangeSampler(args.steps_per_epoch * args.batch_size)
    loader = DataLoader(
        ds,
        batch_size=args.batch_size,
        sampler=sampler,
        num_workers=args.workers,
        worker_init_fn=worker_init,
        multiprocessing_context="spawn" if args.workers else None,
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers else None,
    )
    val = load_val_set(args.data_root, args.val_images)
    n_train = sum(p.numel() for p in params)
    log(
        f"model centernet_lite0: {n_train / 1e6:.2f} M trainable; {len(ds.txl)} TXL + {len(ds.marrow)} marrow fields; "
        f"{len(val)} val fields; epochs {start_epoch}..{args.epochs - 1} x {args.steps_per_epoch} steps x {args.batch_size}"
    )

    results = out / "results.csv"
    fields = ["epoch", "step", "loss", "heatmap", "size", "offset", "lr", "images_per_s", "wall_s",
              *(f"ap50_{c}" for c in EVAL_CLASSES), "skipped_steps"]  # fmt: skip
    if not results.exists():
        with open(results, "w", newline="") as f:
            csv.writer(f).writerow(fields)

    t_run = time.perf_counter()
    bad_streak = 0
    for epoch in range(start_epoch, args.epochs):
        sampler.start = epoch * args.steps_per_epoch * args.batch_size
        set_train_mode(model)
        sums = dict.fromkeys(("loss", "heatmap", "size", "offset"), 0.0)
        n_ok = skipped = 0
        t_epoch = t_log = time.perf_counter()
        for i, batch in enumerate(loader):
            parts = detection_loss(model(batch["image"]), batch)
            if not torch.isfinite(parts["loss"]):
                skipped += 1
                bad_streak += 1
                log(f"epoch {epoch} step {i}: non-finite loss {parts['loss'].item()}, step skipped")
                opt.zero_grad(set_to_none=True)
                sched.step()
                if bad_streak >= MAX_BAD_STEPS:
                    log(f"{MAX_BAD_STEPS} consecutive non-finite losses: aborting")
                    return 1
                continue
            bad_streak = 0
            opt.zero_grad(set_to_none=True)
            parts["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            sched.step()
            n_ok += 1
            for k in sums:
                sums[k] += parts[k].item()
            if (i + 1) % args.log_every == 0:
                now = time.perf_counter()
                ips = args.log_every * args.batch_size / (now - t_log)
                t_log = now
                log(
                    f"epoch {epoch} step {i + 1}/{args.steps_per_epoch} loss {parts['loss'].item():.3f} "
                    f"(hm {parts['heatmap'].item():.3f} size {parts['size'].item():.3f} off {parts['offset'].item():.3f}) "
                    f"lr {sched.get_last_lr()[0]:.2e} {ips:.2f} img/s"
                )
        train_s = time.perf_counter() - t_epoch
        ips = args.steps_per_epoch * args.batch_size / train_s
        ap = validate(model, val)
        score = float(np.nanmean([ap["rbc"], ap["nucleated"]]))
        means = {k: v / max(1, n_ok) for k, v in sums.items()}
        with open(results, "a", newline="") as f:
            csv.writer(f).writerow([epoch, (epoch + 1) * args.steps_per_epoch, *(f"{means[k]:.5f}" for k in sums),
                                    f"{sched.get_last_lr()[0]:.3e}", f"{ips:.2f}", f"{time.perf_counter() - t_run:.0f}",
                                    *(f"{ap[c]:.4f}" for c in EVAL_CLASSES), skipped])  # fmt: skip
        if score > best:
            best = score
            save_model_folder(model, model_config(args), out / "best")
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                    "epoch": epoch, "best": best, "rng": rng_state(), "args": json.loads((out / "config.json").read_text())},
                   out / "last.pt")  # fmt: skip
        log(
            f"epoch {epoch} done: loss {means['loss']:.3f} {ips:.2f} img/s train {train_s:.0f}s; AP50 "
            + " ".join(f"{c} {ap[c]:.3f}" for c in EVAL_CLASSES)
            + f"; best {best:.3f}"
        )
        elapsed_min = (time.perf_counter() - t_run) / 60
        if args.time_budget_min and elapsed_min >= args.time_budget_min and epoch + 1 < args.epochs:
            log(
                f"time budget {args.time_budget_min} min reached after epoch {epoch} ({elapsed_min:.1f} min): stopping"
            )
            break
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())

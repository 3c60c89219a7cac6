"""Hemophagocyte metrics: host detection, engulfed types and the macrophage confusion."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hemoscan.datamodel import NUCLEATED_SUBTYPES

from .matching import EMPTY_BOXES, box_iou, greedy_match

#: Engulfed types compared by the engulfed-type metrics (subtypes count as nucleated).
ENGULFED_BASE_TYPES: tuple[str, ...] = ("rbc", "nucleated", "platelet")


@dataclass(frozen=True)
class EngulfedBox:
    """An engulfed cell: its type (``rbc``, ``nucleated``, ``platelet`` or a nucleated subtype)
    and box (x1, y1, x2, y2 px)."""

    label: str
    box: tuple[float, float, float, float]
    score: float = 1.0


@dataclass(frozen=True)
class HostBox:
    """A hemophagocyte (true or predicted): its box (x1, y1, x2, y2 px), score and engulfed cells."""

    box: tuple[float, float, float, float]
    engulfed: tuple[EngulfedBox, ...] = ()
    score: float = 1.0

    def type_counts(self) -> dict[str, int]:
        """Engulfed cells per base type; nucleated subtypes count as ``nucleated``."""
        counts = dict.fromkeys(ENGULFED_BASE_TYPES, 0)
        for cell in self.engulfed:
            base = base_engulfed_type(cell.label)
            counts[base] = counts.get(base, 0) + 1
        return counts


def base_engulfed_type(label: str) -> str:
    """``granulocyte`` / ``erythroblast`` / ``lymphocyte`` -> ``nucleated``; others unchanged."""
    return "nucleated" if label in NUCLEATED_SUBTYPES else label


@dataclass(frozen=True)
class HostTile:
    """One tile's hemophagocytes: ``truth`` and ``preds``; ``ignore [M, 4]`` regions;
    optional true macrophage boxes and predicted macrophage boxes ``[K, 4]`` for the
    confusion counts (a host is one physical cell called either way)."""

    truth: tuple[HostBox, ...]
    preds: tuple[HostBox, ...]
    ignore: np.ndarray = field(default_factory=lambda: EMPTY_BOXES)
    true_macrophages: np.ndarray = field(default_factory=lambda: EMPTY_BOXES)
    pred_macrophages: np.ndarray = field(default_factory=lambda: EMPTY_BOXES)


@dataclass(frozen=True)
class HemophagocyteMetrics:
    """Hemophagocyte detection and engulfed-type metrics over a set of tiles (see module).

    Rates are None where their denominator is zero.
    """

    tiles: int
    true: int
    predicted: int
    tp: int
    fp: int
    fn: int
    fp_on_true_macrophages: int
    missed_called_macrophage: int
    matched_with_exact_engulfed: int
    true_cells_in_matched: int
    pred_cells_in_matched: int
    cell_pairs: int
    cell_pairs_same_type: int
    cell_confusion: dict[str, dict[str, int]]
    #: Every call, sorted: ``"FIELD:HOST"`` for a call that found the field's true host number
    #: HOST, ``"FIELD:false"`` for a false one (FIELD and HOST count from 0 in the order given),
    #: so two runs on the same fields make the same calls exactly when these are equal.
    call_outcomes: tuple[str, ...] = ()

    @property
    def sensitivity(self) -> float | None:
        return self.tp / self.true if self.true else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def fp_per_tile(self) -> float | None:
        return self.fp / self.tiles if self.tiles else None

    @property
    def engulfed_exact(self) -> float | None:
        return self.matched_with_exact_engulfed / self.tp if self.tp else None

    @property
    def cell_type_accuracy(self) -> float | None:
        return self.cell_pairs_same_type / self.cell_pairs if self.cell_pairs else None

    @property
    def cell_recall(self) -> float | None:
        return self.cell_pairs / self.true_cells_in_matched if self.true_cells_in_matched else None

    def to_dict(self) -> dict[str, object]:
        return {
            "tiles": self.tiles,
            "true": self.true,
            "predicted": self.predicted,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "sensitivity": self.sensitivity,
            "precision": self.precision,
            "fp_per_tile": self.fp_per_tile,
            "fp_on_true_macrophages": self.fp_on_true_macrophages,
            "missed_called_macrophage": self.missed_called_macrophage,
            "engulfed_exact": self.engulfed_exact,
            "engulfed_exact_n": f"{self.matched_with_exact_engulfed}/{self.tp}",
            "engulfed_cell_type_accuracy": self.cell_type_accuracy,
            "engulfed_cell_recall": self.cell_recall,
            "engulfed_cells": {
                "true_in_matched": self.true_cells_in_matched,
                "predicted_in_matched": self.pred_cells_in_matched,
                "pairs": self.cell_pairs,
                "pairs_same_type": self.cell_pairs_same_type,
                "confusion_true_to_predicted": self.cell_confusion,
            },
            "call_outcomes": list(self.call_outcomes),
        }


def _host_boxes(hosts: Sequence[HostBox]) -> np.ndarray:
    return np.array([h.box for h in hosts], np.float64).reshape(-1, 4)


def hemophagocyte_metrics(
    tiles: Sequence[HostTile], iou_threshold: float = 0.5, engulfed_iou: float = 0.5
) -> HemophagocyteMetrics:
    """Hemophagocyte sensitivity, precision, false positives per tile and engulfed-type
    agreement over ``tiles`` (see the module docstring for the definitions)."""
    true = predicted = tp = fp = fn = fp_macro = miss_macro = exact = 0
    true_cells = pred_cells = pairs = same = 0
    outcomes: list[str] = []
    confusion: dict[str, dict[str, int]] = {
        t: dict.fromkeys((*ENGULFED_BASE_TYPES, "missed"), 0) for t in ENGULFED_BASE_TYPES
    }
    for field_index, tile in enumerate(tiles):
        gt = _host_boxes(tile.truth)
        pb = _host_boxes(tile.preds)
        scores = np.array([h.score for h in tile.preds], np.float64)
        order, matched, ignored = greedy_match(pb, scores, gt, iou_threshold, tile.ignore)
        true += len(gt)
        predicted += int((~ignored).sum())
        hit_gt = set()
        for i, k in enumerate(order):
            if ignored[i]:
                continue
            if matched[i] < 0:
                fp += 1
                outcomes.append(f"{field_index}:false")
                if len(tile.true_macrophages) and (
                    box_iou(pb[k], tile.true_macrophages).max() >= iou_threshold
                ):
                    fp_macro += 1
                continue
            tp += 1
            j = int(matched[i])
            outcomes.append(f"{field_index}:{j}")
            hit_gt.add(j)
            p, t = tile.preds[k], tile.truth[j]
            exact += int(p.type_counts() == t.type_counts())
            tc = np.array([c.box for c in t.engulfed], np.float64).reshape(-1, 4)
            pc = np.array([c.box for c in p.engulfed], np.float64).reshape(-1, 4)
            true_cells += len(tc)
            pred_cells += len(pc)
            cell_order, cm, _ = greedy_match(pc, [c.score for c in p.engulfed], tc, engulfed_iou)
            paired = set()
            for a, b in zip(cell_order, cm):
                if b < 0:
                    continue
                pairs += 1
                paired.add(int(b))
                tt = base_engulfed_type(t.engulfed[int(b)].label)
                pt = base_engulfed_type(p.engulfed[int(a)].label)
                same += int(tt == pt)
                row = confusion.setdefault(tt, dict.fromkeys((*ENGULFED_BASE_TYPES, "missed"), 0))
                row[pt] = row.get(pt, 0) + 1
            for b, cell in enumerate(t.engulfed):
                if b not in paired:
                    tt = base_engulfed_type(cell.label)
                    row = confusion.setdefault(
                        tt, dict.fromkeys((*ENGULFED_BASE_TYPES, "missed"), 0)
                    )
                    row["missed"] += 1
        for j in range(len(gt)):
            if j in hit_gt:
                continue
            fn += 1
            if len(tile.pred_macrophages) and (
                box_iou(gt[j], tile.pred_macrophages).max() >= iou_threshold
            ):
                miss_macro += 1
    return HemophagocyteMetrics(
        tiles=len(tiles),
        true=true,
        predicted=predicted,
        tp=tp,
        fp=fp,
        fn=fn,
        fp_on_true_macrophages=fp_macro,
        missed_called_macrophage=miss_macro,
        matched_with_exact_engulfed=exact,
        true_cells_in_matched=true_cells,
        pred_cells_in_matched=pred_cells,
        cell_pairs=pairs,
        cell_pairs_same_type=same,
        cell_confusion=confusion,
        call_outcomes=tuple(sorted(outcomes)),
    )

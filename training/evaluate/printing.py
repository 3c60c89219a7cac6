"""Rich tables of an evaluation's metrics dict (what ``hemoscan evaluate`` prints)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_metrics(metrics: Mapping[str, Any], console: Any = None) -> None:
    """Rich tables of a metrics dict: one per suite, real vs composed in each title."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    m = metrics["model"]
    console.print(
        f"[bold]{m['name']}[/bold] {m['version']}  sha256 {m['sha256'][:12]}...  ({m['folder']})"
    )
    settings = metrics.get("settings", {})
    if settings.get("backend", "torch") != "torch":
        quantization = settings.get("quantization") or "full precision"
        console.print(f"backend {settings['backend']} ({quantization})")
    if "tuning" in metrics:
        t = Table(title="Tuned thresholds (dev data, not reported below as results)")
        for col in ("class", "threshold", "rule", "tuned on", "P", "R", "F1", "FP/tile"):
            t.add_column(col)
        for c, r in metrics["tuning"]["classes"].items():
            t.add_row(
                c,
                _fmt(r["threshold"], 2),
                r["objective"],
                ", ".join(r["tuned_on"]),
                _fmt(r["precision"]),
                _fmt(r["recall"]),
                _fmt(r["f1"]),
                _fmt(r["fp_per_tile"]),
            )
        console.print(t)
    for name, s in metrics["sections"].items():
        kind = "REAL" if s["data"] == "real" else "COMPOSED"
        console.print(
            f"\n[bold]{name}[/bold] [{'green' if kind == 'REAL' else 'magenta'}]{kind}[/] "
            f"- {s['images']} images - {s['description']}"
        )
        console.print(f"  scale: {s['scale']}")
        if s.get("auto_scale"):
            a = s["auto_scale"]
            line = "  auto scale sources: " + ", ".join(
                f"{src} {k}" for src, k in a["fields_by_source"].items()
            )
            if q := a.get("ratio_to_oracle"):
                line += (
                    f"; chosen / oracle scale: median {_fmt(q['median'])} (min {_fmt(q['min'])}, "
                    f"max {_fmt(q['max'])}), within 1.25x {_fmt(q['within_1.25x'])} of {q['n']}"
                )
            console.print(line)
        if s.get("detection"):
            t = Table(title=f"{name} ({kind}): detection")
            for col in ("class", "objects", "AP50", "AP50 95% CI", "AP50:95", "thr", "precision",
                        "recall"):  # fmt: skip
                t.add_column(col, justify="right" if col != "class" else "left")
            for c, d in s["detection"].items():
                t.add_row(
                    c + (" (positives only)" if d.get("positives_only") else ""),
                    str(s["objects"].get(c, "")),
                    _fmt(d.get("ap50")),
                    "-".join(_fmt(v) for v in d["ap50_ci95"]) if d.get("ap50_ci95") else "",
                    _fmt(d.get("ap50_95")),
                    _fmt(d.get("threshold"), 2),
                    _fmt(d.get("precision")),
                    _fmt(d.get("recall")),
                )
            console.print(t)
        if "hemophagocyte" in s:
            h = s["hemophagocyte"]
            console.print(
                f"  hemophagocytes ({kind}): sensitivity {_fmt(h['sensitivity'])} ({h['tp']}/{h['true']}), "
                f"precision {_fmt(h['precision'])}, FP/tile {_fmt(h['fp_per_tile'])}, "
                f"engulfed types exact {_fmt(h['engulfed_exact'])} ({h['engulfed_exact_n']}), "
                f"engulfed cell type accuracy {_fmt(h['engulfed_cell_type_accuracy'])}"
            )
            ca = s["count_agreement"]
            console.print(
                f"  count agreement per 1000 nucleated ({kind}): {ca['pairs_n']} samples, "
                f"mean |diff| {_fmt(ca['mean_abs_difference'], 1)}, bias {_fmt(ca['bias'], 1)}, "
                f"limits {ca['limits_of_agreement']}"
            )
        calls = s["calls_per_100_fields"]
        console.print(
            f"  calls per 100 fields: hemophagocyte {calls['hemophagocyte']}, macrophage "
            f"{calls['macrophage']}; median {s.get('median_ms_per_field', '-')} ms per field"
        )
        if "nested_nucleated_pairs_per_field" in s:
            pairs = s["nested_nucleated_pairs"]
            console.print(
                "  nested / duplicate nucleated pairs per field: "
                f"{_fmt(s['nested_nucleated_pairs_per_field'])} ({pairs} pairs)"
            )
    if metrics.get("training"):
        tr = metrics["training"]
        console.print(
            f"\ntraining: {tr['wall_s']} s wall, {tr.get('images_per_s_median')} images/s "
            f"(median per epoch) from {tr['source']}"
        )

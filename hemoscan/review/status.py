"""Where the review of each sample stands: the verdicts in force applied to the suggestions.

Per reviewed class (hemophagocyte, macrophage): **suggested** (the model's calls of that
class), **confirmed** (cells finally of that class: suggestions accepted, suggestions of the
other class relabelled into it, and cells a reviewer added), **rejected** (suggestions of that
class finally something else: rejected, or relabelled) and **pending** (suggestions of that
class without a verdict). A class's review is complete when nothing of it is pending.

The rate per 1000 nucleated cells from confirmed counts uses the scan's nucleated cells
assessed, plus the cells reviewers added, minus the suggestions they called artefacts (a
rejected cell, or one relabelled ``other_cell``, stays a nucleated cell assessed).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from hemoscan.datamodel import NUCLEATED_SUBTYPES, REVIEWED_CLASSES
from hemoscan.review.index import ReviewIndex, Suggestion
from hemoscan.review.log import ENGULFED_KEYS, ReviewLog, Verdict

PENDING, CONFIRMED, REJECTED = "pending", "confirmed", "rejected"


class Outcome(NamedTuple):
    """A suggestion under its verdict: ``state`` for its own class (pending, confirmed,
    rejected), the ``label`` it finally has (``None`` when pending or rejected outright) and,
    for a final hemophagocyte, its engulfed counts (the model's typed nucleated subtypes kept
    while the nucleated count is the model's)."""

    state: str
    label: str | None
    engulfed: dict[str, int] | None


def outcome(suggestion: Suggestion, verdict: Verdict | None) -> Outcome:
    det = suggestion.detection
    if verdict is None:
        return Outcome(PENDING, None, None)
    label = verdict.label
    engulfed = None
    if label == "hemophagocyte" and verdict.engulfed is not None:
        model = det.engulfed or {}
        engulfed = dict(verdict.engulfed)
        if engulfed["nucleated"] == model.get("nucleated"):
            engulfed.update({t: model[t] for t in NUCLEATED_SUBTYPES if model.get(t)})
    return Outcome(CONFIRMED if label == det.label else REJECTED, label, engulfed)


@dataclass(frozen=True)
class ClassReview:
    """One class of one sample (see the module docstring)."""

    suggested: int = 0
    confirmed: int = 0
    rejected: int = 0
    pending: int = 0

    @property
    def complete(self) -> bool:
        return self.pending == 0

    @property
    def reviewed(self) -> int:
        return self.suggested - self.pending


@dataclass(frozen=True)
class SampleReview:
    """The review of one sample: ``classes`` by class; ``added`` cells; ``artefacts`` (suggestions
    called artefacts); ``reviewers`` (names, in order of first verdict); ``first`` and ``last``
    (UTC times of the verdicts in force); ``confirmed_engulfed``: the final engulfed counts of
    each confirmed hemophagocyte."""

    sample: str
    classes: dict[str, ClassReview]
    added: int = 0
    artefacts: int = 0
    reviewers: tuple[str, ...] = ()
    first: str | None = None
    last: str | None = None
    confirmed_engulfed: tuple[dict[str, int], ...] = ()

    @property
    def verdicts(self) -> int:
        return sum(c.reviewed for c in self.classes.values()) + self.added

    @property
    def started(self) -> bool:
        return self.verdicts > 0

    @property
    def complete(self) -> bool:
        return all(c.complete for c in self.classes.values())

    @property
    def suggested(self) -> int:
        return sum(c.suggested for c in self.classes.values())

    @property
    def pending(self) -> int:
        return sum(c.pending for c in self.classes.values())

    def nucleated_assessed(self, scanned: int) -> int:
        """The denominator of the confirmed rate, from the scan's ``scanned`` nucleated cells."""
        return max(0, scanned + self.added - self.artefacts)

    def confirmed_by_engulfed(self) -> dict[str, int]:
        """Confirmed hemophagocytes holding at least one cell of each type (as the scan's
        ``hemophagocytes_by_engulfed``)."""
        out = dict.fromkeys(ENGULFED_KEYS, 0)
        for counts in self.confirmed_engulfed:
            for t, n in counts.items():
                if n:
                    out[t] = out.get(t, 0) + 1
        return out

    def to_dict(self) -> dict[str, object]:
        return {
            "sample": self.sample,
            "classes": {c: {"suggested": r.suggested, "confirmed": r.confirmed,
                            "rejected": r.rejected, "pending": r.pending, "complete": r.complete}
                        for c, r in self.classes.items()},  # fmt: skip
            "added": self.added, "artefacts": self.artefacts, "reviewers": list(self.reviewers),
            "first": self.first, "last": self.last, "complete": self.complete,
            "verdicts": self.verdicts, "suggested": self.suggested, "pending": self.pending,
        }  # fmt: skip


@dataclass
class _Tally:
    counts: dict[str, dict[str, int]] = field(
        default_factory=lambda: {c: dict.fromkeys(("suggested", CONFIRMED, REJECTED, PENDING), 0)
                                 for c in REVIEWED_CLASSES})  # fmt: skip
    added: int = 0
    artefacts: int = 0
    reviewers: dict[str, str] = field(default_factory=dict)  # name -> time of their first verdict
    times: list[str] = field(default_factory=list)
    engulfed: list[dict[str, int]] = field(default_factory=list)

    def note(self, v: Verdict) -> None:
        self.reviewers[v.reviewer] = min(v.time, self.reviewers.get(v.reviewer, v.time))
        self.times.append(v.time)

    def final(self, label: str | None, engulfed: dict[str, int] | None) -> None:
        if label in REVIEWED_CLASSES:
            self.counts[label][CONFIRMED] += 1
            if label == "hemophagocyte":
                self.engulfed.append(engulfed or dict.fromkeys(ENGULFED_KEYS, 0))


def review_status(index: ReviewIndex, verdicts: Mapping[str, Verdict]) -> dict[str, SampleReview]:
    """Every sample's :class:`SampleReview` (samples without suggestions included)."""
    tallies = {s: _Tally() for s in index.samples}
    for s in index.suggestions:
        t = tallies.setdefault(s.sample, _Tally())
        v = verdicts.get(s.id)
        o = outcome(s, v)
        own = t.counts[s.detection.label]
        own["suggested"] += 1
        if o.state == PENDING:
            own[PENDING] += 1
            continue
        assert v is not None
        t.note(v)
        if o.state == REJECTED:
            own[REJECTED] += 1
        t.final(o.label, o.engulfed)
        t.artefacts += o.label == "artefact"
    for v in verdicts.values():
        if v.added and (v.sample, v.tile) in index.tiles:
            t = tallies.setdefault(v.sample, _Tally())
            t.note(v)
            t.added += 1
            t.final(v.label, v.engulfed)
    return {
        sample: SampleReview(
            sample,
            {c: ClassReview(**counts) for c, counts in t.counts.items()},
            t.added, t.artefacts, tuple(sorted(t.reviewers, key=t.reviewers.__getitem__)),
            min(t.times) if t.times else None, max(t.times) if t.times else None,
            tuple(t.engulfed),
        )  # fmt: skip
        for sample, t in tallies.items()
    }


def read_review_status(scan_dir: str | Path) -> tuple[dict[str, SampleReview], int]:
    """:func:`review_status` of a scan folder as it stands, and the number of unreadable lines
    of its ``review.jsonl``."""
    log = ReviewLog(scan_dir)
    verdicts = log.latest()
    return review_status(ReviewIndex(scan_dir), verdicts), log.unreadable

"""Pathologist review of a scan's suggestions: every hemophagocyte and macrophage confirmed,
relabelled or rejected, cells the model missed added, all recorded in ``review.jsonl``.

Modules: :mod:`~hemoscan.review.log` (the audit file), :mod:`~hemoscan.review.index` (what
there is to review), :mod:`~hemoscan.review.status` (where each sample's review stands),
:mod:`~hemoscan.review.images` (crops and tile views, cut lazily), :mod:`~hemoscan.review.server`
(the review page), :mod:`~hemoscan.review.apply` (verdicts from a CSV or a QuPath GeoJSON) and
:mod:`~hemoscan.review.export` (confirmed cells as a training set).
"""

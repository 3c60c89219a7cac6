"""Scan engines other than the local one (``hemoscan scan --engine ...``).

An engine runs :func:`hemoscan.pipeline.scan_items` (decode, batch, predict) somewhere else
and hands the results back to :func:`hemoscan.pipeline.scan` in input order; the writing of
the output folder always stays in ``scan``. Engines import their heavy dependencies lazily.
"""

"""Scan engines (``hemoscan scan --engine ...``): where a scan's tiles are decoded and predicted.

:mod:`hemoscan.engines.local` does the per-tile work in this process
(:func:`~hemoscan.engines.local.scan_items`); :mod:`hemoscan.engines.dask_engine` runs that
same work on the workers of a Dask cluster. Both hand the results back to
:func:`hemoscan.pipeline.scan` in input order; the writing of the output folder always stays
in ``scan``. Engines sit below the pipeline and receive its resolved
:class:`~hemoscan.scan_spec.ScanSpec`. dask.distributed is optional and imported where a
cluster is used.
"""

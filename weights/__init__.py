"""The shipped models: one model folder each, listed with their sha256s in ``manifest.json``.

Installed as the package ``hemoscan_weights`` (package data of the hemoscan wheel and sdist), so
an installed ``hemoscan`` finds its models outside a checkout. Read through
:func:`hemoscan.models.loading.weights_dir`, never by path.
"""

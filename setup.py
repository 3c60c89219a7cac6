"""Packages: the library ``hemoscan``; the shipped models from ``weights/`` as ``hemoscan_weights``
(package data, so an installed hemoscan has its default model); and, from the separate
``training/`` folder (kept apart from the library, like torchvision's references),
``hemoscan_training``, which adds ``hemoscan train`` and ``hemoscan evaluate``. Everything else is
in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["hemoscan", "hemoscan.*"])
    + ["hemoscan_training", "hemoscan_weights"]
    + [f"hemoscan_training.{p}" for p in find_packages("training")],
    package_dir={"hemoscan_training": "training", "hemoscan_weights": "weights"},
)

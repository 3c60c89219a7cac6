"""Packages: the library ``hemoscan`` and, from the separate ``training/`` folder (kept apart
from the library, like torchvision's references), ``hemoscan_training`` behind ``hemoscan train``
and ``hemoscan evaluate``. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["hemoscan", "hemoscan.*"])
    + ["hemoscan_training"]
    + [f"hemoscan_training.{p}" for p in find_packages("training")],
    package_dir={"hemoscan_training": "training"},
)

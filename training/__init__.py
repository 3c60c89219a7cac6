"""hemoscan_training: train and evaluate hemoscan detectors (installed from ``training/``).

Kept apart from the library, like torchvision's ``references/detection``: the library never
imports it; ``hemoscan train`` and ``hemoscan evaluate`` do, lazily.
"""

"""Every model in ``weights/manifest.json`` loads with its hashes checked, and its shipped ONNX
export computes what its PyTorch weights compute (``atol=1e-4``, as for any export)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hemoscan.models import load_model
from hemoscan.models.loading import read_manifest
from hemoscan.models.onnx_format import INPUT_NAME, load_onnx_model

SHIPPED = sorted(read_manifest())


@pytest.mark.parametrize("name", SHIPPED)
def test_a_shipped_model_loads_and_its_export_agrees(name: str) -> None:
    model = load_model(name)
    assert model.config.name == name and model.sha256 == read_manifest()[name]["sha256"]
    if "onnx_sha256" not in read_manifest()[name]:
        pytest.skip(f"{name} ships no ONNX export")
    export = load_onnx_model(name, threads=1)
    x = np.random.default_rng(0).normal(size=(1, 3, 96, 128)).astype(np.float32)
    with torch.no_grad():
        expected = [t.numpy() for t in model.module.eval()(torch.from_numpy(x))]
    got = export.session.run(None, {INPUT_NAME: x})
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, atol=1e-4)

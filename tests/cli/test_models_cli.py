import json

from typer.testing import CliRunner

from hemoscan.cli.app import app
from hemoscan.models.loading import DEFAULT_MODEL, weights_dir


def test_models_lists_what_the_manifest_and_configs_say() -> None:
    result = CliRunner().invoke(app, ["models"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((weights_dir() / "manifest.json").read_text())
    blocks: dict[str, str] = {}  # first line (the name) -> the indented lines below it
    for line in result.output.splitlines():
        if line.startswith(" "):
            blocks[name] += line + "\n"
        else:
            name = line.removesuffix("  (default)")
            blocks[name] = ""
    assert f"{DEFAULT_MODEL}  (default)" in result.output
    assert set(manifest) < set(blocks)
    for name, entry in manifest.items():
        config = json.loads((weights_dir() / entry["folder"] / "config.json").read_text())
        block = blocks[name]
        assert f"sha256   {entry['sha256']}" in block
        assert f"version  {config['version']}" in block
        assert f"licence  {config['license']}" in block
        assert ", ".join(config["classes"]) in block
        assert str(weights_dir() / entry["folder"]) in block
        pinned = [label for key, label in (("onnx_sha256", "onnx fp32"),
                                           ("int8_onnx_sha256", "onnx int8")) if key in entry]  # fmt: skip
        assert f"exports  {', '.join(pinned) or 'none (PyTorch only)'}" in block
    assert "exports  onnx fp32" in blocks[DEFAULT_MODEL]  # what --backend auto runs on a CPU
    assert "exports  onnx fp32, onnx int8" in blocks["hemoscan-lite0-v4-fastbox"]
    assert "tiny_blob" not in result.output

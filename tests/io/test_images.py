from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile
from PIL import Image

from hemoscan.errors import ImageReadError
from hemoscan.io import images
from hemoscan.io.images import SUPPORTED_EXTENSIONS, read_tile

H, W = 20, 30
RNG = np.random.default_rng(0)
RGB8 = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
GRAY8 = RNG.integers(0, 256, (H, W), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (H, W, 3), dtype=np.uint16)
GRAY16 = RNG.integers(0, 65536, (H, W), dtype=np.uint16)


def check_rgb(arr: np.ndarray) -> None:
    assert arr.dtype == np.uint8
    assert arr.shape == (H, W, 3)
    assert arr.flags.c_contiguous and arr.flags.writeable


def over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha.astype(np.float64)[..., None] / 255
    return np.round(rgb * a + 255 * (1 - a)).astype(np.uint8)


def test_supported_extensions() -> None:
    assert SUPPORTED_EXTENSIONS == (".png", ".jpg", ".jpeg", ".tif", ".tiff")


@pytest.mark.parametrize("name", ["a.png", "a.PNG", "a.tif", "a.TIFF"])
def test_rgb8_lossless(tmp_path: Path, name: str) -> None:
    p = tmp_path / name
    if name.lower().endswith(".png"):
        Image.fromarray(RGB8).save(p, format="PNG")
    else:
        tifffile.imwrite(p, RGB8, photometric="rgb")
    arr = read_tile(p)
    check_rgb(arr)
    np.testing.assert_array_equal(arr, RGB8)


@pytest.mark.parametrize("name", ["a.jpg", "a.jpeg", "a.JPG"])
def test_jpeg(tmp_path: Path, name: str) -> None:
    smooth = np.zeros((H, W, 3), np.uint8)
    smooth[..., 0] = 200
    smooth[..., 1] = np.linspace(0, 255, W, dtype=np.uint8)
    smooth[..., 2] = 60
    Image.fromarray(smooth).save(tmp_path / name, format="JPEG", quality=95)
    arr = read_tile(tmp_path / name)
    check_rgb(arr)
    assert np.abs(arr.astype(int) - smooth).mean() < 4


def _pillow_pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.mark.parametrize("options", [
    {"subsampling": 2}, {"subsampling": 1}, {"subsampling": 0}, {"progressive": True},
    {"quality": 60, "optimize": True},
])  # fmt: skip
def test_colour_jpeg_fast_path_gives_pillows_pixels(tmp_path: Path, options: dict) -> None:
    """OpenCV decodes complete colour JPEGs (faster); its pixels are exactly Pillow's."""
    rng = np.random.default_rng(0)
    noisy = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (5, 5), 0)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90": neither decoder applies it (pixels in stored order)
    p = tmp_path / "a.jpg"
    Image.fromarray(noisy).save(p, format="JPEG", exif=exif, **options)
    assert images._decode_jpeg_fast(p.read_bytes(), (W, H)) is not None  # the fast path runs
    arr = read_tile(p)
    check_rgb(arr)
    np.testing.assert_array_equal(arr, _pillow_pixels(p))


def test_a_jpeg_with_bytes_after_its_end_marker_is_read_by_pillow(tmp_path: Path) -> None:
    p = tmp_path / "a.jpg"
    Image.fromarray(RGB8).save(p, format="JPEG")
    p.write_bytes(p.read_bytes() + b"trailing data")
    np.testing.assert_array_equal(read_tile(p), _pillow_pixels(p))


def test_accepts_str_path(tmp_path: Path) -> None:
    Image.fromarray(RGB8).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_tile(str(tmp_path / "a.png")), RGB8)


def test_rgb16_tiff_scaled_by_shift(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", RGB16, photometric="rgb")
    arr = read_tile(tmp_path / "a.tif")
    check_rgb(arr)
    np.testing.assert_array_equal(arr, (RGB16 >> 8).astype(np.uint8))


def test_planar_rgb16_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", np.moveaxis(RGB16, -1, 0), photometric="rgb")
    np.testing.assert_array_equal(read_tile(tmp_path / "a.tif"), (RGB16 >> 8).astype(np.uint8))


def test_gray16_png_scaled_by_shift(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "a.png"), GRAY16)
    arr = read_tile(tmp_path / "a.png")
    check_rgb(arr)
    expected = (GRAY16 >> 8).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(arr[..., c], expected)


def test_rgb16_png_scaled_by_shift(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "a.png"), RGB16[..., ::-1])
    np.testing.assert_array_equal(read_tile(tmp_path / "a.png"), (RGB16 >> 8).astype(np.uint8))


def test_gray16_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", GRAY16)
    arr = read_tile(tmp_path / "a.tif")
    np.testing.assert_array_equal(arr, np.repeat((GRAY16 >> 8).astype(np.uint8)[..., None], 3, 2))


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_gray8_replicated(tmp_path: Path, ext: str) -> None:
    p = tmp_path / f"a{ext}"
    if ext == ".png":
        Image.fromarray(GRAY8, mode="L").save(p)
    else:
        tifffile.imwrite(p, GRAY8)
    arr = read_tile(p)
    check_rgb(arr)
    np.testing.assert_array_equal(arr, np.stack([GRAY8] * 3, axis=-1))


def test_miniswhite_tiff_inverted(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", GRAY8, photometric="miniswhite")
    np.testing.assert_array_equal(read_tile(tmp_path / "a.tif")[..., 0], 255 - GRAY8)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_rgba_opaque_alpha_dropped(tmp_path: Path, ext: str) -> None:
    rgba = np.dstack([RGB8, np.full((H, W), 255, np.uint8)])
    p = tmp_path / f"a{ext}"
    if ext == ".png":
        Image.fromarray(rgba, mode="RGBA").save(p)
    else:
        tifffile.imwrite(p, rgba, photometric="rgb", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(read_tile(p), RGB8)


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_rgba_translucent_composited_on_white(tmp_path: Path, ext: str) -> None:
    alpha = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    alpha[0, 0] = 0
    rgba = np.dstack([RGB8, alpha])
    p = tmp_path / f"a{ext}"
    if ext == ".png":
        Image.fromarray(rgba, mode="RGBA").save(p)
    else:
        tifffile.imwrite(p, rgba, photometric="rgb", extrasamples=["unassalpha"])
    arr = read_tile(p)
    check_rgb(arr)
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert np.abs(arr.astype(int) - over_white(RGB8, alpha)).max() <= 1


def test_gray_alpha_png(tmp_path: Path) -> None:
    alpha = np.full((H, W), 255, np.uint8)
    alpha[:, :5] = 0
    Image.fromarray(np.dstack([GRAY8, alpha]), mode="LA").save(tmp_path / "a.png")
    arr = read_tile(tmp_path / "a.png")
    check_rgb(arr)
    assert (arr[:, :5] == 255).all()
    np.testing.assert_array_equal(arr[:, 5:, 1], GRAY8[:, 5:])


def test_palette_png(tmp_path: Path) -> None:
    palette = RNG.integers(0, 256, (256, 3), dtype=np.uint8)
    index = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    im = Image.fromarray(index, mode="P")
    im.putpalette(palette.tobytes())
    im.save(tmp_path / "a.png")
    arr = read_tile(tmp_path / "a.png")
    check_rgb(arr)
    np.testing.assert_array_equal(arr, palette[index])


def test_palette_png_with_transparency(tmp_path: Path) -> None:
    index = np.zeros((H, W), np.uint8)
    index[:, 10:] = 1
    im = Image.fromarray(index, mode="P")
    im.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    im.save(tmp_path / "a.png", transparency=0)
    arr = read_tile(tmp_path / "a.png")
    assert (arr[:, :10] == 255).all()
    assert tuple(arr[0, 15]) == (200, 100, 50)


def test_palette_tiff(tmp_path: Path) -> None:
    colormap = RNG.integers(0, 65536, (3, 256), dtype=np.uint16)
    index = RNG.integers(0, 256, (H, W), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "a.tif", index, photometric="palette", colormap=colormap)
    expected = (colormap[:, index] >> 8).astype(np.uint8).transpose(1, 2, 0)
    np.testing.assert_array_equal(read_tile(tmp_path / "a.tif"), expected)


def test_lzw_tiff_falls_back_to_pillow(tmp_path: Path) -> None:
    Image.fromarray(RGB8).save(tmp_path / "a.tif", compression="tiff_lzw")
    np.testing.assert_array_equal(read_tile(tmp_path / "a.tif"), RGB8)


def test_rgb16_lzw_tiff_without_codec_names_the_missing_package(tmp_path: Path) -> None:
    p = tmp_path / "a.tif"
    tifffile.imwrite(p, RGB16, photometric="rgb")
    with tifffile.TiffFile(p, mode="r+") as tif:
        tif.pages[0].tags["Compression"].overwrite(5)
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        assert read_error(p).endswith(
            ": TIFF compression LZW needs the 'imagecodecs' package to be decoded"
        )
    else:
        pytest.skip("imagecodecs is installed")


def test_deflate_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "a.tif", RGB8, photometric="rgb", compression="deflate")
    np.testing.assert_array_equal(read_tile(tmp_path / "a.tif"), RGB8)


# --- failures -------------------------------------------------------------------------------


def read_error(path: Path | str) -> str:
    with pytest.raises(ImageReadError) as info:
        read_tile(path)
    message = str(info.value)
    assert message.startswith(f"{os.fspath(path)}: "), message
    return message


def test_missing(tmp_path: Path) -> None:
    assert read_error(tmp_path / "nope.png").endswith(": not found")


def test_empty(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    assert read_error(tmp_path / "a.png").endswith(": file is empty (0 bytes)")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "d.png").mkdir()
    assert read_error(tmp_path / "d.png").endswith(": is a directory")


def test_unsupported_extension(tmp_path: Path) -> None:
    Image.fromarray(RGB8).save(tmp_path / "a.bmp")
    msg = read_error(tmp_path / "a.bmp")
    assert "unsupported extension '.bmp'" in msg
    assert "(supported: .png, .jpg, .jpeg, .tif, .tiff)" in msg


def test_no_extension(tmp_path: Path) -> None:
    Image.fromarray(RGB8).save(tmp_path / "a", format="PNG")
    assert "no file extension" in read_error(tmp_path / "a")


def test_text_named_png(tmp_path: Path) -> None:
    (tmp_path / "x.png").write_text("hello, this is not an image\n")
    msg = read_error(tmp_path / "x.png")
    assert "cannot decode as an image" in msg
    assert "not a PNG file" in msg and "text" in msg


def test_jpeg_named_png(tmp_path: Path) -> None:
    Image.fromarray(RGB8).save(tmp_path / "x.png", format="JPEG")
    assert "content is a JPEG image, not PNG" in read_error(tmp_path / "x.png")


def _encoded(fmt: str) -> bytes:
    noisy = RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", ".jpg"), ("PNG", ".png"), ("TIFF", ".tif")])
def test_truncated(tmp_path: Path, fmt: str, ext: str) -> None:
    data = _encoded(fmt)
    p = tmp_path / f"cut{ext}"
    p.write_bytes(data[: len(data) // 2])
    msg = read_error(p)
    assert f"cannot decode as an image (truncated or corrupt {fmt}" in msg


def test_truncated_jpeg_near_end(tmp_path: Path) -> None:
    data = _encoded("JPEG")
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[:-20])
    assert "truncated or corrupt JPEG" in read_error(p)


@pytest.mark.parametrize("cut", [12, 40])
def test_truncated_header(tmp_path: Path, cut: int) -> None:
    p = tmp_path / "cut.png"
    p.write_bytes(_encoded("PNG")[:cut])
    assert "truncated or corrupt PNG" in read_error(p)


def test_float32_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "f.tif", RNG.random((H, W), dtype=np.float32))
    msg = read_error(tmp_path / "f.tif")
    assert msg.endswith(": unsupported pixel type float32 (expected 8- or 16-bit integers)")


def test_int32_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "i.tif", np.zeros((H, W), np.int32))
    assert "unsupported pixel type int32" in read_error(tmp_path / "i.tif")


def test_multipage_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((3, H, W), np.uint8), photometric="minisblack")
    assert "multi-page TIFF with 3 images" in read_error(tmp_path / "s.tif")


def test_two_channel_tiff(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "c.tif", np.zeros((H, W, 2), np.uint8), planarconfig="contig")
    assert "unsupported channel count 2" in read_error(tmp_path / "c.tif")


def test_five_channel_tiff(tmp_path: Path) -> None:
    data = np.zeros((H, W, 5), np.uint8)
    tifffile.imwrite(tmp_path / "c.tif", data, photometric="rgb", planarconfig="contig")
    assert "unsupported channel count 5" in read_error(tmp_path / "c.tif")


def test_zero_size(tmp_path: Path) -> None:
    with pytest.warns(UserWarning):
        tifffile.imwrite(tmp_path / "z.tif", np.zeros((0, 0), np.uint8))
    msg = read_error(tmp_path / "z.tif")
    assert msg.endswith(": image is 0x0")


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_too_large_refused_before_decoding(
    tmp_path: Path, ext: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "MAX_PIXELS", H * W - 1)
    p = tmp_path / f"big{ext}"
    if ext == ".png":
        Image.fromarray(RGB8).save(p)
    else:
        tifffile.imwrite(p, RGB8, photometric="rgb")
    msg = read_error(p)
    assert f"image is {W}x{H}" in msg and "decompression bomb" in msg


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def test_decompression_bomb_png(tmp_path: Path) -> None:
    header = struct.pack(">IIBBBBB", 40_000, 40_000, 8, 0, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 1000))
        + _png_chunk(b"IEND", b"")
    )
    (tmp_path / "bomb.png").write_bytes(data)
    msg = read_error(tmp_path / "bomb.png")
    assert "image has 1,600,000,000 pixels, more than the 150,000,000 allowed" in msg
    assert "decompression bomb" in msg

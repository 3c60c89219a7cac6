import numpy as np
import pytest

from hemoscan.inference.tiling import grid


@pytest.mark.parametrize(("width", "height"), [(100, 80), (256, 256), (257, 900), (1000, 640)])
def test_window_cores_partition_the_image(width: int, height: int) -> None:
    owners = np.zeros((height, width), np.int32)
    windows = grid(width, height, size=256, overlap=64)
    for win in windows:
        owners[win.cy0 : win.cy1, win.cx0 : win.cx1] += 1
        assert win.x0 % 32 == 0 and win.y0 % 32 == 0
        # a cell centred in the core is seen whole when its radius <= overlap / 2
        if win.cx0 > 0:
            assert win.cx0 - win.x0 == 32
        if win.cx1 < width:
            assert win.x0 + win.size - win.cx1 == 32
    assert (owners == 1).all()


def test_small_image_is_one_window() -> None:
    (win,) = grid(200, 100, size=256, overlap=64)
    assert (win.x0, win.y0, win.cx1, win.cy1) == (0, 0, 200, 100)

import base64

import cv2
import numpy as np

from hemoscan.datamodel import Detection
from hemoscan.io.regions import region_name
from hemoscan.report.evidence import collect_crops
from tests.wsi import DISC_RGB, GLASS, smear, write_pyramidal_tiff


def _decode(uri: str) -> np.ndarray:
    data = base64.b64decode(uri.split(",", 1)[1])
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def test_slide_detection_is_cropped_from_the_slide_around_it(tmp_path):
    path = tmp_path / "slide.tif"
    write_pyramidal_tiff(path, smear(1536, 1024, [(1200, 700)], radius=30), mpp=0.25)
    det = Detection("macrophage", 0.9, 1170.0, 670.0, 1230.0, 730.0)
    tile = region_name(path.name, 1024, 512, 512, 512)

    crops, warnings = collect_crops([(tile, det)], [tmp_path])

    assert warnings == []
    crop = _decode(crops[0].image_uri)
    centre = crop[crop.shape[0] // 2, crop.shape[1] // 2].astype(int)
    assert np.abs(centre - DISC_RGB).max() < 25  # the disc sits in the middle of its crop
    assert np.abs(crop[3, crop.shape[1] // 2].astype(int) - GLASS).max() < 25  # glass around it


def test_unreadable_slide_keeps_the_row_and_warns(tmp_path):
    det = Detection("hemophagocyte", 0.8, 10.0, 10.0, 50.0, 50.0)
    tile = region_name("gone.svs", 0, 0, 512, 512)

    crops, warnings = collect_crops([(tile, det)], [tmp_path])

    assert crops[0].image_uri == "" and crops[0].tile == tile
    assert warnings == ["gone.svs: slide not readable now, a crop is missing"]

import numpy as np
import pytest

from hemoscan.inference.predictor import Predictor
from tests.conftest import disc_image


def _key(dets):
    return sorted(
        (d.label, round(d.x1, 3), round(d.y1, 3), round(d.x2, 3), round(d.y2, 3), round(d.score, 5))
        for d in dets
    )


def test_finds_each_disc_once(tiny_model) -> None:
    image, centres = disc_image(300, 200, 6)
    dets = Predictor(tiny_model).predict(image)
    assert len(dets) == len(centres)
    for det in dets:
        cx, cy = det.center
        assert min(np.hypot(cx - x, cy - y) for x, y in centres) <= 3
        assert det.label == "nucleated" and 20 <= det.x2 - det.x1 <= 28


def test_tiled_prediction_equals_whole_image_prediction(tiny_model) -> None:
    image, centres = disc_image(1000, 700, 60, seed=3)
    whole = Predictor(tiny_model, tile_size=1024, overlap=0).predict(image)
    tiled = Predictor(tiny_model, tile_size=256, overlap=64, batch_size=4).predict(image)
    assert len(whole) == len(centres)
    assert _key(tiled) == _key(whole)


def test_cell_on_a_seam_is_counted_once(tiny_model) -> None:
    image = np.full((256, 480, 3), 230, np.uint8)
    import cv2

    cv2.circle(image, (224, 128), 12, (110, 40, 60), -1)  # on the seam between windows 1 and 2
    dets = Predictor(tiny_model, tile_size=256, overlap=64).predict(image)
    assert len(dets) == 1


def test_batch_size_does_not_change_results(tiny_model) -> None:
    images = [disc_image(220, 180, 5, seed=s)[0] for s in range(5)]
    one = [_key(d) for d in Predictor(tiny_model, batch_size=1).predict_batch(images)]
    many = [_key(d) for d in Predictor(tiny_model, batch_size=4).predict_batch(images)]
    assert one == many


def test_scale_maps_boxes_back_to_input_pixels(tiny_model) -> None:
    image, centres = disc_image(400, 400, 5, radius=24, seed=1)
    dets = Predictor(tiny_model, scale=0.5).predict(image)
    assert len(dets) == len(centres)
    for det in dets:
        assert 40 <= det.x2 - det.x1 <= 56  # the model's 24 px box, scaled back x2


def test_conf_overrides_thresholds(tiny_model) -> None:
    image, _ = disc_image(300, 200, 6)
    assert Predictor(tiny_model, conf=0.9999).predict(image) == []
    assert set(Predictor(tiny_model, conf=0.2).thresholds.values()) == {0.2}


@pytest.mark.parametrize(("tile", "overlap"), [(100, 32), (256, 256), (256, 48)])
def test_bad_tiling_is_refused(tiny_model, tile: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        Predictor(tiny_model, tile_size=tile, overlap=overlap)


def test_near_misses_are_kept_apart_and_change_no_detection() -> None:
    """Hemophagocyte calls just below the threshold come back as near misses, with the engulfed
    cells only they hold; the detections are exactly those of the same scene without them."""
    from tests.conftest import HEMOPHAGOCYTE_SCENE, scripted_model

    extra = [
        (4, 400.0, 300.0, 100.0, 100.0, -1.2),  # a host scoring 0.23, below the 0.3 threshold
        (5, 390.0, 290.0, 24.0, 24.0),  # an engulfed red cell only it holds
        (4, 124.0, 100.0, 120.0, 110.0, -1.0),  # a weaker peak of the detected hemophagocyte
        (4, 100.0, 330.0, 90.0, 90.0, -3.0),  # 0.05: below the near-miss floor (0.15)
    ]
    image = np.full((512, 512, 3), 230, np.uint8)
    plain = Predictor(scripted_model(HEMOPHAGOCYTE_SCENE)).predict_batch([image])[0]
    (found,) = Predictor(scripted_model(HEMOPHAGOCYTE_SCENE + extra)).predict_scaled([image])
    assert found.detections == plain and len(plain) == 3
    (near,) = found.near_misses
    assert near.label == "hemophagocyte" and near.score == pytest.approx(1 / (1 + np.exp(1.2)))
    assert (near.x1, near.y1, near.x2, near.y2) == (350.0, 250.0, 450.0, 350.0)
    assert near.engulfed == {"rbc": 1, "nucleated": 0, "platelet": 0}


def test_a_host_called_both_ways_is_one_object_even_below_its_best_class_threshold() -> None:
    """A host scoring 0.55 as a macrophage and 0.45 as a hemophagocyte is one object, a
    macrophage: under a macrophage threshold of 0.6 it is reported as nothing, never as the
    hemophagocyte it is less likely to be, as the low-floor pass of evaluation shows it."""
    from dataclasses import replace

    from tests.conftest import ScriptedNet, scripted_model

    def logit(p: float) -> float:
        return float(np.log(p / (1 - p)))

    host = [
        (3, 200.0, 200.0, 100.0, 100.0, logit(0.55)),
        (4, 200.0, 200.0, 96.0, 100.0, logit(0.45)),
    ]
    model = scripted_model(host)
    thresholds = {"macrophage": 0.6, "hemophagocyte": 0.4}
    model = replace(model, config=replace(model.config, score_thresholds=thresholds))
    image = np.full((512, 512, 3), 230, np.uint8)
    (found,) = Predictor(model).predict_scaled([image])
    assert found.detections == [] and found.near_misses == []
    assert [d.label for d in Predictor(model, conf=0.05).predict(image)] == ["macrophage"]
    alone = replace(model, module=ScriptedNet(host[1:]))  # no macrophage call beside it
    assert [(d.label, round(d.score, 2)) for d in Predictor(alone).predict(image)] == [
        ("hemophagocyte", 0.45)
    ]

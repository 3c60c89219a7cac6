"""Evaluate a hemoscan model through the library's own inference path; tune its thresholds.

    hemoscan evaluate --model MODEL --data shared:txl-val,composed-val,segpc-heldout --out m.json
    hemoscan evaluate --model runs/NAME/best --tune-thresholds       # tune on dev data, then report
    hemoscan evaluate --model MODEL --data coco:annotations.json     # any annotated set

Every field goes through :class:`hemoscan.inference.predictor.Predictor` (rescale, tiling,
decoding, NMS, engulfed cells attached to their host) twice: once with every threshold at
``eval_conf`` (0.05) for the AP curves and tuning, once at the model's own thresholds for
the operating-point figures (precision / recall, hemophagocyte metrics, counts, calls per 100
fields). Metric definitions: :mod:`hemoscan_training.metrics`. Boxes are ``x1, y1, x2, y2``
pixels of the input image, origin top-left.

A field's scale is a factor or ``"auto"``: the operating pass then estimates it from the
field's own cells, as ``hemoscan scan`` does (:mod:`hemoscan.inference.scale`), and the AP
pass runs at the scale it chose, so both passes see the same pixels. Such a suite reports the
scale sources and, where an oracle scale is known, the chosen scale over it (``auto_scale``).
Every suite reports the nested / duplicate ``nucleated`` pairs per field at the operating point.

Named suites over the public sets (``--data-root``, default ``../shared/datasets``):

- ``txl-val`` (real): the TXL-PBC validation split, never trained on. Each field is rescaled so
  its median *labelled* red cell is the model's ``rbc_diameter_px``: an oracle scale from the
  labels (a user sets ``--scale``). rbc / platelet / nucleated AP and precision / recall.
- ``txl-val-native`` (real): the same fields at native resolution, scale auto (the plain
  command); the oracle scale of ``txl-val`` is the reference for the chosen scales.
- ``txl-val-scanner`` (real): the same fields resampled so their median labelled red cell is
  32 px (a 40x slide scanner's magnification), scale auto; oracle scale ``rbc_diameter_px / 32``.
- ``segpc-heldout`` (real): every 5th segpc myeloma marrow field (sorted), never trained on by
  runs using :mod:`hemoscan_training.splits`; rescaled by ``rbc_diameter_px / 32``
  (32 px: the fields' approximate red cell). Hemophagocyte and macrophage calls per 100
  fields: hemophagocytes are rare in myeloma marrow, so calls are mostly false alarms.
- ``segpc-heldout-native`` (real): the same fields at native resolution, scale auto, with the
  plasma cells of the segpc masks (components of >= 100 px, touching-cell clusters dropped) as
  positives-only ``nucleated`` truth: nucleated recall is plasma-cell recall (precision and AP
  cannot be measured: the other nucleated cells are not labelled).
- ``bal-heldout`` (real): the bal-macrophages patches of the held-out lavage slides
  (:data:`hemoscan_training.splits.HELDOUT_BAL_SLIDES`, never trained on) at native resolution,
  scale auto; every leukocyte is boxed (macrophages as ``macrophage``, the others
  ``nucleated``) and hemophagocytes are supervised as absent, so every hemophagocyte call is
  a false one; red cells and platelets are not labelled. Oracle scale: the patches' 0.23 µm/px.
- ``composed-val`` (COMPOSED): ``N`` fixed 512 px fields of ``ComposedCrops(part="val")``, made
  only of parts training never sees (TXL-PBC val fields and cells, held-out segpc fields, the
  held-out Giemsa host). Every class's AP, hemophagocyte sensitivity / precision / false
  positives per tile / engulfed types, and per-sample count agreement (10 fields a sample).
- ``composed-val-real-host`` (COMPOSED): the same fields with every host the held-out real
  Giemsa macrophage, the one kind of host no training crop resembles by construction.
- ``composed-val-procedural-host`` (COMPOSED): the same fields with every host procedural;
  with ``composed-val-real-host`` it tells apart what each kind of host contributes to
  ``composed-val`` (whose recipe makes 3 hosts in 10 the real one).
- ``txl-dev`` and ``composed-dev``: tuning data, never reported as results: the TXL-PBC dev
  fields (every 17th train field, held out of training) for rbc / platelet / nucleated, and
  composed fields from *training* parts with another seed for the host and engulfed classes.

Annotated sets: ``coco:FILE.json``, ``yolo:DIR``, ``voc:DIR``, ``qupath:DIR``, ``masks:DIR``
(``--classes`` maps source classes, ``--split`` picks a split) or ``spec:FILE.json|yaml`` (a
:class:`~hemoscan.annotations.DatasetSpec` dict with ``class_map``, ``supervised``, options).
Their fields are real unless the user says otherwise; one sample per image folder.

The package, in the order the data flows: :mod:`.suites` (the shared suites' fields) and
:mod:`.selection` (``--data`` values to suites), :mod:`.predict` (both passes per field),
:mod:`.scoring` (a suite's JSON section), :mod:`.tuning` (thresholds on dev suites),
:mod:`.runner` (a whole evaluation, :func:`run`) and :mod:`.printing` (the tables).
"""

from .common import (
    DEFAULT_DATA_ROOT,
    EVAL_CONF,
    REPORT_SUITES,
    SHARED_SUITES,
    THRESHOLDS_SIDECAR,
    TUNING_SUITES,
    EvaluationError,
)
from .printing import print_metrics
from .runner import evaluate, run, training_record
from .selection import annotated_suite, build_suites, parse_class_map

__all__ = [
    "DEFAULT_DATA_ROOT",
    "EVAL_CONF",
    "REPORT_SUITES",
    "SHARED_SUITES",
    "THRESHOLDS_SIDECAR",
    "TUNING_SUITES",
    "EvaluationError",
    "annotated_suite",
    "build_suites",
    "evaluate",
    "parse_class_map",
    "print_metrics",
    "run",
    "training_record",
]

"""hemoscan's exception hierarchy.

Every error raised on bad user input is a :class:`HemoscanError` whose message names the
offending file or value and, where possible, what to do about it.
"""

from __future__ import annotations


class HemoscanError(Exception):
    """Base class of every error hemoscan raises on purpose."""


class ImageReadError(HemoscanError):
    """An input image is missing, empty, truncated, corrupt or in an unsupported format."""


class SourceError(HemoscanError):
    """A scan source (file, folder, glob or list file) cannot be resolved."""


class UnknownModelError(HemoscanError):
    """No registered model or model folder has the requested name."""


class WeightsIntegrityError(HemoscanError):
    """A weights file does not match the sha256 recorded in its manifest, or cannot be loaded."""


class ModelConfigError(HemoscanError):
    """A model folder's config is missing or inconsistent."""


class OutputDirError(HemoscanError):
    """An output directory cannot be used: it holds results of a different, incompatible run,
    it is not a writable folder, or another scan is writing to it."""


class OutputWriteError(OutputDirError):
    """Writing a scan's outputs failed (disk full, file-size limit, I/O error). The scan
    stopped; every tile marked done is on disk, and re-running the same command resumes."""


class LabValueError(HemoscanError):
    """A lab value is unusable: unknown, missing or wrong-quantity unit, or an impossible value.

    The message names the sample, the analyte and the problem.
    """


class LabFileError(HemoscanError):
    """A lab-panel file is missing, unreadable or laid out unexpectedly."""


class EngineError(HemoscanError):
    """A scan engine cannot run: e.g. no Dask scheduler at the given address, workers that
    cannot see the tiles or load the model, or a worker lost too often."""


class SlideError(ImageReadError):
    """A whole-slide image cannot be opened as a slide, or a region of it cannot be read."""


class PixelSizeError(HemoscanError):
    """A whole-slide image has no usable pixel size (µm per pixel) and none was given."""


class QuantizationError(HemoscanError):
    """A model cannot be quantized as asked: an unknown method, calibration tiles that cannot be
    used, or a quantized graph that fails its checks."""


class SettingsError(HemoscanError, ValueError):
    """A scan or predictor setting is not one of its choices or out of its range (also a
    ``ValueError``, as for any bad argument)."""

"""Small statistics shared by the scan summary (QC) and the report."""

from __future__ import annotations

import math


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``k / n`` (``n > 0``), as fractions.

    Wilson EB. Probable inference, the law of succession, and statistical inference.
    J Am Stat Assoc. 1927;22(158):209-212. Chosen over the normal approximation because
    hemophagocyte counts are small: it never leaves [0, 1] and behaves at k = 0.
    """
    if n <= 0:
        raise ValueError("n must be positive")
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)

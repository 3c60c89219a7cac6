import pytest

from hemoscan.stats import wilson_interval


def test_wilson_interval_known_values() -> None:
    # Newcombe (1998) Table I, example 1 (81/263): 0.2553 to 0.3662
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=1e-4) and hi == pytest.approx(0.3662, abs=1e-4)
    lo, hi = wilson_interval(0, 10)  # Newcombe example 5: 0 to 0.2775
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)


def test_wilson_interval_needs_cells() -> None:
    with pytest.raises(ValueError):
        wilson_interval(0, 0)

import pytest

from hemoscan.report.render import format_number


@pytest.mark.parametrize(
    ("value", "text"),
    [(38.611111111111114, "38.61"), (123.998, "124"), (8400.0, "8400"), (0.0451, "0.0451"),
     (2.5, "2.5"), (12345.67, "12345.7"), (3, "3"), (True, "True"), ("pending", "pending")],
)  # fmt: skip
def test_report_numbers_drop_float_noise(value: object, text: str) -> None:
    assert format_number(value) == text

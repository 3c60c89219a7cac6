"""What the machine offers: VNNI read from cpuinfo's flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from hemoscan.hardware import cpu_has_vnni


@pytest.mark.parametrize(("flags", "expected"), [
    ("fpu sse2 avx2 fma avx512f avx512_vnni avx512bw", True),
    ("fpu sse2 avx2 fma avx_vnni", True),
    ("fpu sse2 avx2 fma avx512f", False),
])  # fmt: skip
def test_vnni_is_read_from_the_cpu_flags(flags: str, expected: bool, tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert cpu_has_vnni(cpuinfo) is expected


def test_no_cpuinfo_means_no_vnni(tmp_path: Path) -> None:
    assert cpu_has_vnni(tmp_path / "missing") is False
    (tmp_path / "arm").write_text("processor\t: 0\nFeatures\t: fp asimd\n")
    assert cpu_has_vnni(tmp_path / "arm") is False

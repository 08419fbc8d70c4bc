"""include.core.units: bytes inside, units only at presentation."""

from __future__ import annotations

import pytest

from include.core.units import SIZE_UNITS, convert, format_size, resolve_unit


@pytest.mark.parametrize("size, unit, text", [
    (0, "B", "0 B"),
    (1536, "B", "1536 B"),
    (1536, "KB", "1.54 KB"),
    (1536, "KiB", "1.50 KiB"),
    (5_000_000, "MB", "5.00 MB"),
    (5 * 1024**2, "MiB", "5.00 MiB"),
    (3 * 10**9, "GB", "3.00 GB"),
    (3 * 1024**3, "GiB", "3.00 GiB"),
    (2 * 10**12, "TB", "2.00 TB"),
    (2 * 1024**4, "TiB", "2.00 TiB"),
    (1, "GB", "0.00 GB"),  # tiny sizes in a big unit round to zero, the byte count stays exact elsewhere
    (0, "auto", "0 B"),
    (1023, "auto", "1023 B"),
    (1024, "auto", "1.00 KiB"),
    (1024**2 - 1, "auto", "1.00 MiB"),  # 1023.999 KiB rounds to 1024.00: shown in the next unit
    (1024**2 - 6, "auto", "1023.99 KiB"),
    (1024**2, "auto", "1.00 MiB"),
    (7 * 1024**3 + 1, "auto", "7.00 GiB"),
    (5 * 1024**5, "auto", "5120.00 TiB"),
])
def test_format_size(size, unit, text):
    assert format_size(size, unit) == text


def test_units_are_the_params_enum():
    assert SIZE_UNITS == ("B", "KB", "MB", "GB", "TB", "KiB", "MiB", "GiB", "TiB", "auto")


def test_convert_and_resolve():
    assert convert(1500, "B") == 1500 and isinstance(convert(1500, "B"), int)
    assert convert(1500, "KB") == 1.5
    assert resolve_unit(10, "MB") == "MB"
    assert resolve_unit(2048, "auto") == "KiB"


@pytest.mark.parametrize("bad", ["kb", "Kb", "PB", "", "bytes"])
def test_unknown_unit_is_rejected_by_name(bad):
    with pytest.raises(ValueError, match="is not one of"):
        format_size(1, bad)

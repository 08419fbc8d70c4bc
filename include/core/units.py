"""Byte sizes for people: sizes are integers of bytes everywhere inside; units exist only here.

``KB``/``MB``/``GB``/``TB`` are decimal (1 KB = 1000 B), ``KiB``/``MiB``/``GiB``/``TiB`` binary
(1 KiB = 1024 B). ``auto`` picks the largest binary unit in which the value is at least 1 (as shown:
what would read 1024.00 of a unit reads 1.00 of the next).
"""

from __future__ import annotations

UNIT_BYTES: dict[str, int] = {
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "TB": 1000**4,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
#: Every value the ``size_unit`` param and ``--unit`` accept.
SIZE_UNITS: tuple[str, ...] = (*UNIT_BYTES, "auto")
_AUTO_STEPS = ("TiB", "GiB", "MiB", "KiB")


def check_unit(unit: str) -> str:
    if unit not in SIZE_UNITS:
        raise ValueError(f"size unit {unit!r} is not one of {', '.join(SIZE_UNITS)}")
    return unit


def resolve_unit(size_bytes: int, unit: str) -> str:
    """The concrete unit ``size_bytes`` is shown in (``auto`` chooses by magnitude, as shown: 1,048,575 B
    rounds to 1024.00 KiB, so it is 1.00 MiB)."""
    if check_unit(unit) != "auto":
        return unit
    for i, candidate in enumerate(_AUTO_STEPS):
        if size_bytes >= UNIT_BYTES[candidate]:
            # shown rounded to 2 decimals: 1024.00 of a unit is 1.00 of the next one
            return _AUTO_STEPS[i - 1] if i and convert(size_bytes, candidate) >= 1024 else candidate
    return "B"


def convert(size_bytes: int, unit: str) -> float | int:
    """``size_bytes`` in ``unit`` (a concrete unit): an int for ``B``, else rounded to 2 decimals."""
    if unit == "B":
        return int(size_bytes)
    return round(size_bytes / UNIT_BYTES[check_unit(unit)], 2)


def format_size(size_bytes: int, unit: str = "auto") -> str:
    """``1536, "auto"`` → ``"1.50 KiB"``; ``1536, "KB"`` → ``"1.54 KB"``; ``1536, "B"`` → ``"1536 B"``."""
    concrete = resolve_unit(size_bytes, unit)
    value = convert(size_bytes, concrete)
    return f"{value} B" if concrete == "B" else f"{value:.2f} {concrete}"

"""Sizes in bytes as people write them: plain bytes, or a number with K, M, G or T (powers of 1024)."""

from __future__ import annotations

import re

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """The bytes `text` means ("256M", "1.5G", "4096"); ValueError if it is not a size."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    found = _SIZE.fullmatch(str(text).strip())
    if found is None:
        raise ValueError(f"{text!r} is not a size (bytes, or a number with K, M, G or T)")
    return int(float(found.group(1)) * _UNITS[found.group(2).upper()])


def format_size(size: int) -> str:
    """The shortest exact way to write `size`: "1G", "256M", "1000"."""
    for unit in ("T", "G", "M", "K"):
        if size and size % _UNITS[unit] == 0:
            return f"{size // _UNITS[unit]}{unit}"
    return str(size)

"""Deterministic bucketing, byte for byte as every GrowthBook SDK does it: the same user gets
the same variation from our server, our Python SDK, and any GrowthBook SDK on the payload.

`hash` maps (seed, value) to [0, 1): version 1 is FNV-1a 32 of value+seed mod 1000, version 2
FNV-1a of the decimal FNV-1a of seed+value, mod 10000 (better spread, independent seeds).
"""

from __future__ import annotations

import re
from typing import Any

from traction.flags.domain.conditions import js_string

Range = tuple[float, float]
_FNV_OFFSET = 0x811C9DC5
_MASK = 0xFFFFFFFF


def fnv1a32(text: str) -> int:
    """FNV-1a over UTF-16 code units (JavaScript's `charCodeAt`)."""
    h = _FNV_OFFSET
    if text.isascii():
        units: Any = text.encode("ascii")
    else:
        raw = text.encode("utf-16-le")
        units = [raw[i] | raw[i + 1] << 8 for i in range(0, len(raw), 2)]
    for c in units:
        h ^= c
        h = (h * 0x01000193) & _MASK
    return h


def gb_hash(seed: str, value: Any, version: int) -> float | None:
    text = value if isinstance(value, str) else js_string(value)
    if version == 2:
        return (fnv1a32(str(fnv1a32(seed + text))) % 10000) / 10000
    if version == 1:
        return (fnv1a32(text + seed) % 1000) / 1000
    return None


def in_range(n: float, r: Range | list[float]) -> bool:
    return r[0] <= n < r[1]


def in_namespace(hash_value: Any, namespace: Any) -> bool:
    """`namespace`: [id, start, end]: the user's hash in that namespace falls in [start, end)."""
    n = gb_hash("__" + js_string(namespace[0]), hash_value, 1)
    return n is not None and namespace[1] <= n < namespace[2]


def equal_weights(n: int) -> list[float]:
    return [1.0 / n] * n if n > 0 else []


def bucket_ranges(
    n: int, coverage: float | None = 1.0, weights: list[float] | None = None
) -> list[Range]:
    """Each variation's [start, end): its weight's slice, of which `coverage` takes part. Bad
    weights (wrong count, not summing to 1 within 1%) fall back to equal ones."""
    cov = 1.0 if coverage is None else min(1.0, max(0.0, coverage))
    equal = equal_weights(n)
    w = weights if weights is not None and len(weights) == n else equal
    total = sum(w)
    if total < 0.99 or total > 1.01:
        w = equal
    out, cumulative = [], 0.0
    for x in w:
        start = cumulative
        cumulative += x
        out.append((start, start + cov * x))
    return out


def choose_variation(n: float, ranges: list[Range] | list[list[float]]) -> int:
    for i, r in enumerate(ranges):
        if r[0] <= n < r[1]:
            return i
    return -1


_QUERY_INT = re.compile(r"^\s*[+-]?\d+")


def query_string_override(key: str, url: str | None, variations: int) -> int | None:
    """`?<experiment key>=<variation index>` in the page's URL forces that variation (QA)."""
    if not url or "?" not in url:
        return None
    search = url.split("?")[1]
    if not search:
        return None
    for kv in re.sub(r"#.*", "", search).split("&"):
        k, _, v = kv.partition("=")
        if k != key:
            continue
        m = _QUERY_INT.match(v)
        if m is None:
            return None
        i = int(m.group())
        return i if 0 <= i < variations else None
    return None

"""Exact latency percentiles: the one percentile definition every analysis module uses.

Definition: **nearest rank**. For a sample of n values sorted ascending, x(1) <= ... <= x(n),
the p-th percentile (0 < p <= 100) is x(k) with k = ceil(p/100 * n). Every reported percentile is
therefore a latency that was actually observed: no interpolation between two requests.

This is the definition of numpy's ``method="inverted_cdf"``, but numpy evaluates p/100 * n in
binary floating point, and 99.9/100 * 1000 = 999.0000000000001 makes it pick x(1000) instead of
x(999) (for every n a multiple of 1000). So the rank is computed here in exact rational
arithmetic (p read as the decimal it is written as) and the value selected with ``np.partition``,
the same selection ``np.percentile`` uses, in O(n).

Percentiles are computed over all the values given (a full per-request record), not over Locust's
~2-significant-digit buckets. An empty sample has no percentile: NaN.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from fractions import Fraction

import numpy as np

#: The definition, named as numpy names it (numpy's float rounding aside; see above).
PERCENTILE_METHOD = "nearest rank (numpy 'inverted_cdf', rank in exact arithmetic)"

#: The percentiles a run summary reports.
REPORTED_PERCENTILES: tuple[float, ...] = (50.0, 90.0, 95.0, 99.0, 99.9)


@functools.lru_cache(maxsize=256)
def _fraction(percentile: float) -> tuple[int, int]:
    """percentile/100 as an exact fraction (numerator, denominator) of the decimal written."""
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be within 0..100, got {percentile}")
    frac = Fraction(str(float(percentile))) / 100
    return frac.numerator, frac.denominator


def nearest_rank_index(n: int, percentile: float) -> int:
    """The 1-based rank k = ceil(percentile/100 * n), clamped to [1, n], computed exactly."""
    num, den = _fraction(float(percentile))
    k = -(-num * n // den)  # ceil in integers
    return min(max(k, 1), n)


def nearest_rank(values: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """Nearest-rank percentiles of ``values`` (float64 array, one entry per percentile).

    NaN for every percentile when ``values`` is empty. ``values`` must not contain NaN.
    """
    values = np.asarray(values)
    if values.size == 0:
        return np.full(len(percentiles), np.nan)
    return _select_in_place(values.copy(), percentiles)


def _select_in_place(values: np.ndarray, percentiles: Sequence[float]) -> np.ndarray:
    """``nearest_rank`` of a non-empty array it may reorder (a temporary of the caller's)."""
    idx = [nearest_rank_index(values.size, p) - 1 for p in percentiles]
    ranks = sorted(set(idx))
    # One selection per rank, each in what lies above the previous one: np.partition given
    # several ranks at once is slower than sorting the whole array.
    values.partition(ranks[0])
    for below, rank in zip(ranks, ranks[1:], strict=False):
        values[below + 1:].partition(rank - below - 1)
    return values[idx].astype(np.float64)


def grouped_nearest_rank(
    codes: np.ndarray, n_groups: int, values: np.ndarray, percentiles: Sequence[float]
) -> np.ndarray:
    """Nearest-rank percentiles of ``values`` per group, shape (n_groups, len(percentiles)).

    ``codes`` holds each value's group number in [0, n_groups); a negative code drops the value
    (pandas' factorize marks missing keys with -1). Each group is brought into one contiguous
    slice, then one selection per group: codes already in order (time bins of a run, whose
    requests are sorted by time) need nothing moved; others take one stable sort of the codes,
    a radix sort when they fit in 8 bits (~3 ms a million; 16 bits take five times as long).
    """
    qs = list(percentiles)
    out = np.full((n_groups, len(qs)), np.nan)
    values = np.asarray(values)
    if n_groups == 0 or values.size == 0:
        return out
    codes = np.asarray(codes)
    if codes.size and codes.min() < 0:
        keep = codes >= 0
        codes, values = codes[keep], values[keep]
    if np.all(codes[1:] >= codes[:-1]):
        bounds = np.searchsorted(codes, np.arange(n_groups + 1), side="left")
        ordered = values.copy()
    else:
        narrow = codes.astype(np.int8 if n_groups <= np.iinfo(np.int8).max + 1
                              else np.int16 if n_groups <= np.iinfo(np.int16).max + 1
                              else np.int64, copy=False)
        order = np.argsort(narrow, kind="stable")
        ordered = values[order]
        bounds = np.concatenate(([0], np.cumsum(np.bincount(narrow, minlength=n_groups))))
    for g in range(n_groups):
        start, stop = bounds[g], bounds[g + 1]
        if stop > start:
            out[g] = _select_in_place(ordered[start:stop], qs)  # ``ordered`` is our own copy
    return out

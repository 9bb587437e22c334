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
    _select_ranks(values, idx)
    return values[idx].astype(np.float64)


def _select_ranks(values: np.ndarray, idx: Sequence[int]) -> None:
    """Reorder ``values`` in place so that each 0-based rank in ``idx`` holds the value a full
    sort would put there. One selection per rank, each in what lies above the previous one:
    np.partition given several ranks at once is slower than sorting the whole array."""
    ranks = sorted(set(idx))
    values.partition(ranks[0])
    for below, rank in zip(ranks, ranks[1:], strict=False):
        values[below + 1:].partition(rank - below - 1)


#: Groups few enough to take one at a time (nodes, scenarios; not time bins).
FEW_GROUPS = 16


def group_sizes(codes: np.ndarray, n_groups: int) -> np.ndarray:
    """How many of ``codes`` are each of 0..n_groups-1: ``np.bincount``, but for a few groups
    one comparison per group, ten times faster than bincount's conversion of small codes."""
    if n_groups <= FEW_GROUPS:
        return np.array([np.count_nonzero(codes == g) for g in range(n_groups)], dtype=np.intp)
    return np.bincount(codes, minlength=n_groups)


def grouped_nearest_rank(
    codes: np.ndarray, n_groups: int, values: np.ndarray, percentiles: Sequence[float]
) -> np.ndarray:
    """Nearest-rank percentiles of ``values`` per group, shape (n_groups, len(percentiles)).

    ``codes`` holds each value's group number in [0, n_groups); a negative code drops the value
    (pandas' factorize marks missing keys with -1). Codes already in order (time bins of a
    run, whose requests are sorted by time) give one slice per group, selected in place; a few
    groups of integers (latency in µs per node) are packed with their group number and selected
    in one array (``_packed_nearest_rank``); others take one stable sort of the codes, a radix
    sort when they fit in 8 bits (~3 ms a million; 16 bits take five times as long).
    """
    values = np.asarray(values)
    if n_groups == 0 or values.size == 0:
        return np.full((n_groups, len(percentiles)), np.nan)
    codes = np.asarray(codes)
    if codes.size and codes.min() < 0:
        keep = codes >= 0
        codes, values = codes[keep], values[keep]
    if np.all(codes[1:] >= codes[:-1]):
        bounds = np.searchsorted(codes, np.arange(n_groups + 1), side="left")
        return sliced_nearest_rank(values, bounds, percentiles)
    packed = _packed_nearest_rank(codes, n_groups, values, percentiles)
    if packed is not None:
        return packed
    narrow = codes.astype(np.int8 if n_groups <= np.iinfo(np.int8).max + 1
                          else np.int16 if n_groups <= np.iinfo(np.int16).max + 1
                          else np.int64, copy=False)
    order = np.argsort(narrow, kind="stable")
    bounds = np.concatenate(([0], np.cumsum(group_sizes(narrow, n_groups))))
    return sliced_nearest_rank(values[order], bounds, percentiles, in_place=True)


def _packed_nearest_rank(codes: np.ndarray, n_groups: int, values: np.ndarray,
                         percentiles: Sequence[float]) -> np.ndarray | None:
    """``grouped_nearest_rank`` of a few groups of non-negative integers (latency in µs), with
    no sort: each value is packed with its group number in the top bits of one int64, so the
    packed values of group g fill ranks bounds[g]..bounds[g+1]-1 of the whole array, in order,
    and one selection per wanted rank finds them. An argsort of the codes costs two to three
    times as much (it is memory-bound: ~6 ms a million at 4 M rows). None when the values do
    not fit (floats, negatives, too large) or the groups are many."""
    bits = max(1, (n_groups - 1).bit_length())
    shift = 63 - bits
    if (n_groups > FEW_GROUPS or values.dtype.kind not in "iu"
            or values.min() < 0 or values.max() >= 1 << shift):
        return None
    packed = codes.astype(np.int64) << shift
    packed |= values.astype(np.int64, copy=False)
    sizes = group_sizes(codes, n_groups)
    starts = np.concatenate(([0], np.cumsum(sizes)))
    idx = [[int(start) + nearest_rank_index(int(size), p) - 1 for p in percentiles] if size
           else [] for start, size in zip(starts, sizes, strict=False)]
    _select_ranks(packed, [i for row in idx for i in row])
    out = np.full((n_groups, len(percentiles)), np.nan)
    for g, row in enumerate(idx):
        if row:
            out[g] = packed[row] & ((1 << shift) - 1)
    return out


def sliced_nearest_rank(values: np.ndarray, bounds: np.ndarray, percentiles: Sequence[float],
                        *, in_place: bool = False) -> np.ndarray:
    """Nearest-rank percentiles of each slice ``values[bounds[g]:bounds[g + 1]]``, shape
    (len(bounds) - 1, len(percentiles)); NaN for an empty slice. For values already grouped
    in order, such as the time bins of requests sorted by time. ``in_place``: ``values`` is a
    temporary that may be reordered within each slice (else it is copied first)."""
    qs = list(percentiles)
    out = np.full((len(bounds) - 1, len(qs)), np.nan)
    values = np.asarray(values) if in_place else np.array(values)
    for g, (start, stop) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if stop > start:
            out[g] = _select_in_place(values[start:stop], qs)
    return out

"""The measured window of a run: the half-open interval [start_ts, end_ts) after warm-up.

Rows are selected by their own timestamp: a request belongs to the window when it *started*
inside it (a request started just before ``end_ts`` counts even if it finished after), a metric
sample when it was taken inside it. Warm-up rows (before ``start_ts``) and rows after the end are
excluded.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

#: (start_ts, end_ts) in epoch seconds.
Window = tuple[float, float]


def check_window(window: Window | None) -> Window | None:
    """Return ``window`` as floats, or raise ValueError naming what is wrong with it."""
    if window is None:
        return None
    try:
        start, end = (float(window[0]), float(window[1]))
    except (TypeError, ValueError, IndexError) as exc:
        raise ValueError(
            f"window must be (start_ts, end_ts) in epoch seconds, got {window!r}"
        ) from exc
    if not (math.isfinite(start) and math.isfinite(end)) or end <= start:
        raise ValueError(
            f"window end must be after its start (got start={start}, end={end}): "
            "pass the measured window (start_ts, end_ts) from run.json"
        )
    return (start, end)


def window_mask(ts: np.ndarray, window: Window | None) -> np.ndarray | None:
    """Boolean mask of the timestamps inside ``window``, or None when there is no window."""
    window = check_window(window)
    if window is None:
        return None
    return (ts >= window[0]) & (ts < window[1])


#: Rows of a frame inside a window: a slice of a time-sorted frame, else a boolean mask.
Rows = slice | np.ndarray


def is_sorted(values: np.ndarray) -> bool:
    """True when ``values`` never decrease (NaN anywhere makes it False)."""
    return bool(np.all(values[1:] >= values[:-1]))


def window_rows(ts: np.ndarray, window: Window | None) -> Rows | None:
    """The rows whose timestamp is inside ``window`` (None when there is no window).

    A slice when ``ts`` is sorted, as eiperf writes requests.parquet: a window is then one run
    of rows, found by binary search, and selecting with a slice makes views instead of copies.
    Otherwise the boolean mask of ``window_mask``."""
    window = check_window(window)
    if window is None:
        return None
    if is_sorted(ts):
        start, stop = np.searchsorted(ts, window, side="left")
        return slice(int(start), int(stop))
    return (ts >= window[0]) & (ts < window[1])


def row_positions(rows: Rows | None, within: np.ndarray) -> np.ndarray:
    """Positions in the whole frame of the rows at positions ``within`` of a selection."""
    if rows is None:
        return within
    if isinstance(rows, slice):
        return within + rows.start
    return np.flatnonzero(rows)[within]


def ok_latency_ms(requests: pd.DataFrame, window: Window | None) -> np.ndarray:
    """Latency (ms) of the successful requests started inside ``window`` (all when None): the
    sample the latency figures describe. A new array, in row order."""
    ts = requests["ts"].to_numpy(dtype=np.float64)
    ok = requests["ok"].to_numpy(dtype=bool, na_value=False)
    latency_us = requests["latency_us"].to_numpy()
    rows = window_rows(ts, window)
    if rows is not None:
        ok, latency_us = ok[rows], latency_us[rows]
    return latency_us[ok] / 1000.0


def window_duration(ts: np.ndarray, window: Window | None) -> float:
    """Length of the window in seconds.

    Without a window, the span from the first to the last timestamp is used; that span
    underestimates the real duration by up to one inter-arrival time (so throughput computed over
    it is slightly high for short runs). NaN when fewer than two timestamps and no window.
    """
    window = check_window(window)
    if window is not None:
        return window[1] - window[0]
    if ts.size < 2:
        return math.nan
    span = float(ts.max() - ts.min())
    return span if span > 0 else math.nan

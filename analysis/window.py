"""The measured window of a run: the half-open interval [start_ts, end_ts) after warm-up.

Rows are selected by their own timestamp: a request belongs to the window when it *started*
inside it (a request started just before ``end_ts`` counts even if it finished after), a metric
sample when it was taken inside it. Warm-up rows (before ``start_ts``) and rows after the end are
excluded.
"""

from __future__ import annotations

import math

import numpy as np

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

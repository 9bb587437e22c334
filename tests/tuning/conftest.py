"""Fixtures the tuning tests share."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuning.journal import Journal
from tuning.restore import restore_cluster


@pytest.fixture
def journal(testbed, tmp_path):
    """A journal for one test on the session testbed; whatever the test left changed is
    restored at the end."""
    j = Journal.begin(tmp_path / "results", Path(testbed.source), "test")
    yield j
    if j.path.exists():
        restore_cluster(testbed, j, progress=lambda m: None)
        j.close()

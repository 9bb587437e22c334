"""eiperf: the command line on top of eicore, analysis, testbed, loadtests and tuning."""

from eicore import __version__

__all__ = ["__version__"]

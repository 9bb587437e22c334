"""eiperf's foundation: what every layer above shares and nothing of the project imports into.

errors, fsutil, the cluster model, the result schemas of runs and sweeps, the Carbon log parser,
the version, and cluster access (node transports, node and nginx control, the LB client, the
proxy template). Layers above: analysis and testbed, loadtests, tuning, then the CLI (eiperf).
"""

__version__ = "0.1.0"

"""`eiperf doctor`: the guide's production checks on every host of a cluster.

Facts are gathered over each host's transport (`facts`), judged by pure checks per area
(`os_checks`, `nginx_checks`, `cluster_checks`) into `Row`s (`row`), composed by `diagnose`
and formatted by `table`. Nothing here writes to a host.
"""

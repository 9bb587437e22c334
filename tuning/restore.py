"""Put a journal's files back and bring the cluster onto them; recover after a crash.

`restore_cluster` restores the files, then restarts the nodes and reloads the nginx that ran
the changed ones, as the journal's notes say (written by `tuning.apply` before it acted).
`recover` does this for every journal a killed eiperf left open.
"""

from __future__ import annotations

from pathlib import Path

from eicore import lb_control, node_control
from eicore.cluster import Cluster, load_cluster
from eicore.errors import EiperfError
from eicore.node_control import Progress
from tuning.doctor.fix import LIVE_NOTE, restore_live
from tuning.journal import Journal, unfinished_journals
from tuning.journal_record import JournalState
from tuning.restarts import restart_all
from tuning.transport_pool import TransportPool


def restore_cluster(cluster: Cluster | None, journal: Journal, *, progress: Progress = print) -> list[str]:
    """Put the journal's files back, then restart the nodes / reload nginx that ran them.

    A node restarts when the journal says it was restarted with the new files, or when it is
    down though it ran before; nginx reloads when its files changed and it runs. Returns the
    "host:path" of each file restored. Without a cluster, or for a journal noted "files_only"
    (`eiperf deploy`: EI picks up its proxy files by itself), only the files come back.
    """
    changed = journal.changed_files()
    restored = journal.restore(cluster=cluster)
    for item in restored:
        progress(f"restored {item}")
    if cluster is not None and journal.notes.get(LIVE_NOTE):  # `doctor --fix` set sysctls live
        for line in restore_live(cluster, journal.notes[LIVE_NOTE]):
            progress(line)
    if cluster is None or not changed or journal.notes.get("files_only"):
        return restored
    notes = journal.notes
    with TransportPool(cluster) as transports:
        paths = {p for _, p in changed}
        lb = cluster.load_balancer
        nginx_paths = {lb.conf_path(n) for n in (lb.conf, *lb.vhost_files)}
        if paths & nginx_paths:
            t = transports.lb()
            if lb_control.master_pid(t, lb) is not None:
                lb_control.reload(t, lb)
                progress("nginx reloaded with the restored config")
        again = []
        for node in cluster.nodes:
            if not any(p.startswith(node.ei_home.rstrip("/") + "/") for p in paths):
                continue
            alive = node_control.node_state(transports.node(node), node).alive
            if node.name in notes.get("restarted", []):
                again.append(node)
            elif not alive and node.name not in notes.get("down_before", []):
                again.append(node)
        restart_all(again, transports, progress)
    return restored


def cluster_of(journal: Journal) -> Cluster | None:
    """The cluster a journal was written for (None when it has none or the file is gone)."""
    if journal.cluster_file is None or not Path(journal.cluster_file).exists():
        return None
    return load_cluster(journal.cluster_file)


def restore_journals(journals: list[Journal], progress: Progress = print) -> int:
    """Restore and remove each journal (newest first); returns how many were restored.

    A journal whose files could not all be put back stays on disk (and raises); one whose
    files are back is removed even when a restart then fails (the error is raised after).
    """
    errors: list[EiperfError] = []
    count = 0
    for journal in journals:
        try:
            restore_cluster(cluster_of(journal), journal, progress=progress)
        except EiperfError as e:
            errors.append(e)
        finally:
            if journal.state is JournalState.RESTORED:
                journal.close()
                count += 1
            else:
                journal.release()
    if errors:
        raise errors[0]
    return count


def recover(results_dir: Path, progress: Progress = print) -> int:
    """Restore every journal a crashed eiperf left open under `results_dir` (cheap when none)."""
    journals = unfinished_journals(results_dir)
    if not journals:
        return 0
    progress(f"eiperf: restoring {len(journals)} unfinished change journal(s) left by an "
             "interrupted eiperf")
    return restore_journals(journals, progress)

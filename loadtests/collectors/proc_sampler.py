"""The remote side of `ProcCollector`: a POSIX shell on the host that prints /proc on request.

One SSH channel per host runs `exec /bin/sh` (whatever the login shell is); `sampler_script` is
sent once and defines a shell function `s`; every round the collector sends the line
`s <seq> <full>` and reads until `@end <seq>`. The shell itself reads those lines as commands,
so a round costs the host one `awk` (plus one `ls` per EI node on full rounds), no SSH channel
setup and no login shell, and nothing is installed there (sh, awk, ls are POSIX). Measured
against opening a channel per round on the kept connection (`exec_command`), this costs the
host half the CPU, the collector a quarter, and a round 7 ms instead of 65.

What it prints is /proc text between markers, parsed in Python by `loadtests.collectors.procfs`:

    @begin <seq>
    @file <path>                raw lines of a host file (/proc/stat: only the cpu lines;
    ...                          meminfo, snmp, netstat, sockstat: only the lines read)
    @missing <path>             the file before could not be read
    @tcptable                   full rounds: the socket tables were read, then
    @tcp <state hex> <count>    TCP sockets per state (/proc/net/tcp and tcp6, counted by awk:
                                the tables can hold 100k lines; only the counts travel)
    @target:<i> <path>          /proc/<pid>/stat or status of target i's process (the PID from
                                its PID file; no path: no PID there)
    @child:<i> <path>           the same for a child of it (nginx workers)
    @sampler <path>, @session <path>
                                the sampler's own cost: its shell's stat (the awk and ls it ran
                                are counted there once reaped) and the SSH session process
                                serving it (the shell's parent)
    @fds <i> <count>            file descriptors of node target i's process (every round)
    @conns <i> <count>          how many of them are ESTABLISHED TCP sockets (full rounds)
    @end <seq>

Targets are fixed when the script is built: a node's EI process comes from its
`<EI_HOME>/wso2carbon.pid` (read every round, so a restarted node is followed), the load
balancer's nginx from its PID file (master) and the master's children (workers, from
/proc/<pid>/task/<pid>/children).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

#: The command the channel runs: whatever the user's login shell is, a POSIX sh reads our lines.
SHELL_COMMAND = "exec /bin/sh"


@dataclass(frozen=True)
class Target:
    """A process the sampler follows on its host: a node's EI JVM or the LB's nginx."""

    name: str       # the metrics `node` value: the node's name, or "lb"
    kind: str       # "node" (one JVM; its file descriptors too) | "lb" (nginx master + workers)
    pid_file: str   # absolute path on the host


# BEGIN does the /proc reads; the main rule reads the `ls -l /proc/<pid>/fd` listings the shell
# pipes in on full rounds (a line "@fd <i>" before each), and END prints the TCP counts found.
_AWK = r"""
function dump(tag, f, keep,   line, n) {
  print "@" tag " " f
  while ((n = (getline line < f)) > 0) if (keep == "" || line ~ keep) print line
  if (n < 0) print "@missing " f
  close(f)
}
function proc(tag, p) {
  dump(tag, "/proc/" p "/stat", "")
  dump(tag, "/proc/" p "/status", "^(VmRSS|Threads):")
}
function tcp(f,   line, n, a) {
  while ((n = (getline line < f)) > 0) {
    split(line, a, " ")
    if (a[4] ~ /^[0-9A-F][0-9A-F]$/) { st[a[4]]++; if (a[4] == "01") est[a[10]] = 1 }
  }
  close(f)
}
BEGIN {
  nl = split(lbset, L, " "); for (k = 1; k <= nl; k++) lbs[L[k]] = 1
  dump("file", "/proc/uptime", "")
  dump("file", "/proc/stat", "^cpu")
  dump("file", "/proc/loadavg", "")
  dump("file", "/proc/meminfo", "^(MemTotal|MemFree|MemAvailable|Buffers|Cached|SwapTotal|SwapFree):")
  dump("file", "/proc/net/dev", "")
  dump("file", "/proc/diskstats", "")
  dump("file", "/proc/net/snmp", "^Tcp:")
  dump("file", "/proc/net/netstat", "^TcpExt:")
  dump("file", "/proc/net/sockstat", "^TCP:")
  dump("file", "/proc/net/sockstat6", "^TCP6:")
  if (full) {
    tcp("/proc/net/tcp"); tcp("/proc/net/tcp6")
    print "@tcptable"
    for (s in st) print "@tcp " s " " st[s]
  }
  n = split(targets, t, " ")
  for (i = 1; i <= n; i++) {
    split(t[i], kv, "=")
    p = kv[2]
    if (p !~ /^[0-9]+$/) { print "@target:" kv[1]; continue }
    proc("target:" kv[1], p)
    if (kv[1] in lbs) {
      f = "/proc/" p "/task/" p "/children"
      if ((getline line < f) > 0) {
        m = split(line, kids, " ")
        for (j = 1; j <= m; j++) proc("child:" kv[1], kids[j])
      }
      close(f)
    }
  }
  proc("sampler", self)
  proc("session", parent)
}
/^@fd / { fd = $2; conn[fd] = 0; next }
fd != "" && /socket:\[[0-9]+\]$/ {
  match($0, /socket:\[[0-9]+\]$/)
  if (substr($0, RSTART + 8, RLENGTH - 9) in est) conn[fd]++
}
END { for (i in conn) print "@conns " i " " conn[i] }
"""

_NO_PID = '""|*[!0-9]*'


def sampler_script(targets: list[Target] | tuple[Target, ...]) -> str:
    """The shell text that defines `s` for these targets (sent once, after SHELL_COMMAND).

    `s <seq> <full>` prints one round; with full = 1 it also reads the TCP socket tables
    (/proc/net/tcp, tcp6: per-state counts, and each node's ESTABLISHED sockets), which costs
    the kernel a walk of the whole socket hash (milliseconds, more with many sockets)."""
    read_pids, counts, listings, pairs = [], [], [], []
    for i, t in enumerate(targets):
        read_pids.append(f"  p{i}=; {{ read -r p{i} < {shlex.quote(t.pid_file)}; }} 2>/dev/null")
        pairs.append(f"{i}=$p{i}")
        if t.kind == "node":
            counts.append(f'  case $p{i} in {_NO_PID}) ;; *) set -- /proc/$p{i}/fd/*; '
                          f'[ -e "$1" ] && echo "@fds {i} $#";; esac')
            listings.append(f'case $p{i} in {_NO_PID}) ;; *) echo "@fd {i}"; ls -l /proc/$p{i}/fd;; esac')
    lbs = " ".join(str(i) for i, t in enumerate(targets) if t.kind == "lb")
    awk = (f'awk -v self=$$ -v parent=$PPID -v targets="{" ".join(pairs)}" -v lbset="{lbs}" '
           f'-v full=$full "$A"')
    # awk must never read the shell's stdin: that is the channel our next lines arrive on
    full_round = (f"{{ {'; '.join(listings)}; }} 2>/dev/null | {awk}" if listings
                  else f"{awk} </dev/null")
    lines = [
        "export LC_ALL=C",
        f"A={shlex.quote(_AWK)}",
        "hz=$(getconf CLK_TCK 2>/dev/null) || hz=100",
        "s() {",
        "  q=$1 full=$2",
        *read_pids,
        '  echo "@begin $q"',
        *counts,
        '  if [ "$full" = 1 ]; then',
        f"    {full_round}",
        "  else",
        f"    {awk} </dev/null",
        "  fi",
        '  echo "@end $q"',
        "}",
        'echo "@hello $$ $hz"',
    ]
    return "\n".join(lines) + "\n"

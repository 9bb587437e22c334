"""The OS area: WSO2's "Network and OS level performance tuning" values, judged per host.

Pure functions over `HostFacts` / `NodeFacts`. Severity: a value that makes results wrong or
the cluster fragile fails (a local port range starting below 10000 lets outgoing connections
take the servers' ports; fewer open files than WSO2's minimum makes a loaded node refuse
connections); a value only below WSO2's performance recommendation warns.

Open files: WSO2 asks soft 4096 / hard 65535 for the EI user. The JVM raises its own soft
limit to the hard one at start (HotSpot's MaxFDLimit), so the running JVM's limit is what
counts: 65535 or more is ok, above 4096 warns, 4096 or less fails.
"""

from __future__ import annotations

from dataclasses import dataclass

from tuning.doctor.facts import HostFacts, NodeFacts
from tuning.doctor.row import Area, Row, Verdict

#: net.* values the host may set (per network namespace): `doctor --fix` applies them at once
SYSCTL_DROPIN = "/etc/sysctl.d/90-eiperf-wso2.conf"
#: kernel-wide values (fs.file-max): written, applied at the next boot, never by eiperf
SYSCTL_GLOBAL_DROPIN = "/etc/sysctl.d/91-eiperf-wso2-kernel.conf"
LIMITS_DROPIN = "/etc/security/limits.d/90-eiperf-wso2.conf"
NOFILE_SOFT = 4096
NOFILE_HARD = 65535
PORT_RANGE_LOW = 10000


@dataclass(frozen=True)
class Sysctl:
    """A WSO2 recommendation: `rule` is "eq" (exactly), "max" (at most) or "min" (at least,
    each number of a triple)."""

    key: str
    recommended: str
    rule: str


SYSCTLS = (
    Sysctl("net.ipv4.tcp_fin_timeout", "30", "max"),
    Sysctl("net.ipv4.tcp_tw_reuse", "1", "eq"),
    Sysctl("net.ipv4.tcp_tw_recycle", "1", "eq"),
    Sysctl("net.core.rmem_default", "524288", "min"),
    Sysctl("net.core.wmem_default", "524288", "min"),
    Sysctl("net.core.rmem_max", "67108864", "min"),
    Sysctl("net.core.wmem_max", "67108864", "min"),
    Sysctl("net.ipv4.tcp_rmem", "4096 87380 16777216", "min"),
    Sysctl("net.ipv4.tcp_wmem", "4096 65536 16777216", "min"),
    Sysctl("fs.file-max", "2097152", "min"),
)
PORT_RANGE_KEY = "net.ipv4.ip_local_port_range"
#: every sysctl the OS area reads
SYSCTL_KEYS = (*(s.key for s in SYSCTLS), PORT_RANGE_KEY)


def _numbers(text: str) -> list[int] | None:
    try:
        return [int(w) for w in text.split()]
    except ValueError:
        return None


def _meets(spec: Sysctl, current: str) -> bool:
    have, want = _numbers(current), _numbers(spec.recommended)
    if have is None or want is None or len(have) != len(want):
        return False
    if spec.rule == "max":
        return all(h <= w for h, w in zip(have, want, strict=True))
    if spec.rule == "min":
        return all(h >= w for h, w in zip(have, want, strict=True))
    return have == want


def _row(host: str, check: str, current: str, recommended: str, verdict: Verdict,
         fix: str = "", fix_file: str = "") -> Row:
    if verdict in (Verdict.OK, Verdict.NA):
        fix, fix_file = "", ""
    return Row(Area.OS, host, check, current, recommended, verdict, fix, fix_file)


def check_sysctl(spec: Sysctl, host: str, current: str | None, readonly: bool = False) -> Row:
    """One sysctl against WSO2's value; tcp_tw_recycle is n/a where the kernel dropped it.
    Its fix goes to the net.* drop-in `--fix` applies, unless the value is kernel-wide (not
    net.*, or `readonly`: a network namespace shows the kernel's value but cannot set it)."""
    shown = {"max": "≤ ", "min": "≥ "}.get(spec.rule, "") + spec.recommended
    if current is None:
        why = ("(absent: removed in Linux 4.12)" if spec.key.endswith("tcp_tw_recycle")
               else "(absent on this kernel)")
        return _row(host, spec.key, why, shown, Verdict.NA)
    verdict = Verdict.OK if _meets(spec, current) else Verdict.WARN
    return _row(host, spec.key, current, shown, verdict, f"{spec.key} = {_fixed(spec, current)}",
                SYSCTL_DROPIN if spec.key.startswith("net.") and not readonly
                else SYSCTL_GLOBAL_DROPIN)


def _fixed(spec: Sysctl, current: str) -> str:
    """The value to set: the recommendation, keeping each number already better than it."""
    have, want = _numbers(current), _numbers(spec.recommended)
    if spec.rule == "eq" or have is None or want is None or len(have) != len(want):
        return spec.recommended
    better = max if spec.rule == "min" else min
    return " ".join(str(better(h, w)) for h, w in zip(have, want, strict=True))


def check_port_range(host: str, current: str | None) -> Row:
    """The local port range must start at 10000 or above (WSO2's own caveat)."""
    shown = f"lower bound ≥ {PORT_RANGE_LOW}"
    nums = _numbers(current or "")
    if current is None or not nums or len(nums) != 2:
        return _row(host, PORT_RANGE_KEY, current or "(absent)", shown, Verdict.NA)
    low, high = nums
    verdict = Verdict.OK if low >= PORT_RANGE_LOW else Verdict.FAIL
    upper = high if high > PORT_RANGE_LOW else 65535
    return _row(host, PORT_RANGE_KEY, current, shown, verdict,
                f"{PORT_RANGE_KEY} = {PORT_RANGE_LOW} {upper}", SYSCTL_DROPIN)


def _limit(text: str) -> float | None:
    text = text.strip()
    if text == "unlimited":
        return float("inf")
    return float(text) if text.isdigit() else None


def check_user_limits(facts: HostFacts) -> list[Row]:
    """The login's open-files limits (the user that runs EI on a node host)."""
    host, user = facts.label, facts.user or "?"
    rows = []
    soft, hard = _limit(facts.nofile_soft), _limit(facts.nofile_hard)
    if soft is None:
        rows.append(_row(host, f"nofile soft ({user})", facts.nofile_soft or "?",
                         f"≥ {NOFILE_SOFT}", Verdict.NA))
    else:
        rows.append(_row(host, f"nofile soft ({user})", facts.nofile_soft, f"≥ {NOFILE_SOFT}",
                         Verdict.OK if soft >= NOFILE_SOFT else Verdict.FAIL,
                         f"{user} soft nofile {NOFILE_SOFT}", LIMITS_DROPIN))
    if hard is None:
        rows.append(_row(host, f"nofile hard ({user})", facts.nofile_hard or "?",
                         f"≥ {NOFILE_HARD}", Verdict.NA))
    else:
        verdict = (Verdict.OK if hard >= NOFILE_HARD
                   else Verdict.FAIL if hard <= NOFILE_SOFT else Verdict.WARN)
        rows.append(_row(host, f"nofile hard ({user})", facts.nofile_hard, f"≥ {NOFILE_HARD}",
                         verdict, f"{user} hard nofile {NOFILE_HARD}", LIMITS_DROPIN))
    return rows


def jvm_open_files(limits: str) -> str | None:
    """The soft "Max open files" of a `/proc/<pid>/limits` text."""
    for line in limits.splitlines():
        if line.startswith("Max open files"):
            words = line[len("Max open files"):].split()
            return words[0] if words else None
    return None


def check_jvm_limit(node: NodeFacts, user: str = "", host: str = "") -> Row:
    """What the running JVM may really open, from /proc/<pid>/limits (`host`: the label of
    the node's host in the table, default its address)."""
    check = f"{node.name} JVM open files"
    host = host or node.host
    shown = f"≥ {NOFILE_HARD}"
    if node.jvm_limits is None:
        why = node.error or ("not running" if node.pid is None
                             else f"pid {node.pid} from wso2carbon.pid is not running")
        return _row(host, check, f"({why})", shown, Verdict.NA)
    text = jvm_open_files(node.jvm_limits)
    value = _limit(text or "")
    if value is None:
        return _row(host, check, f"(no 'Max open files' in /proc/{node.pid}/limits)", shown,
                    Verdict.NA)
    verdict = (Verdict.OK if value >= NOFILE_HARD
               else Verdict.FAIL if value <= NOFILE_SOFT else Verdict.WARN)
    fix = f"{user or '<EI user>'} hard nofile {NOFILE_HARD}"
    return _row(host, check, f"{text} (pid {node.pid})", shown, verdict, fix, LIMITS_DROPIN)


def check_host(facts: HostFacts, with_limits: bool = True) -> list[Row]:
    """Every OS row of one host: its sysctls, the port range, and (on a node host) the
    login's open-files limits."""
    if facts.error:
        return [_row(facts.label, "reach host", f"({facts.error})", "reachable", Verdict.FAIL)]
    rows = [check_sysctl(spec, facts.label, facts.sysctl.get(spec.key),
                         spec.key in facts.readonly) for spec in SYSCTLS]
    rows.append(check_port_range(facts.label, facts.sysctl.get(PORT_RANGE_KEY)))
    if with_limits:
        rows += check_user_limits(facts)
    return rows

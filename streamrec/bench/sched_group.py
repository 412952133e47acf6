"""Whether the measured server shares the load generator's CPU scheduling group.

Linux shares the CPU fairly between scheduling groups first, then between the threads inside a group.
A cpu cgroup is a group; inside the root cgroup, so is each session (``setsid``) while
``/proc/sys/kernel/sched_autogroup_enabled`` is 1 (autogroup). When the server and the load generator
are in one group, their threads are scheduled one beside the other. Under overload, the server then
loses most of its answers, although it spends the same CPU. At 2,660 requests/s (twice a normal day's
saturation, four times a slow day's), a server started from the bench's own shell answered a median of
164 calls a second in 14 floods, and one in a session of its own 617 in 7. With autogroup off, it
answered 72 to 115 either way (docs/serving-log.md, 2026-12-03, twelfth session).

Deployments give the server a group of its own: a container's cgroup, or a systemd service's session.
``bench serve --start-server`` starts its servers in new sessions. A server started by hand beside the
bench need not have a group of its own, and then its figures under overload measure the scheduler as
much as the server, so the bench says so.

The check sees what ``/proc`` shows. A cgroup namespace (inside a container) shows every cgroup as
``/``, and autogroup does not apply outside the root cgroup. There, two processes of one container can
look separate when they are not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from streamrec.bench.startup import read_proc

__all__ = ["AUTOGROUP_SWITCH", "SchedGroup", "autogroup_name", "cpu_cgroup", "same_group", "sched_group",
           "shares_group_with"]

AUTOGROUP_SWITCH = "/proc/sys/kernel/sched_autogroup_enabled"


@dataclass(frozen=True)
class SchedGroup:
    cgroup: str  # the cpu controller's cgroup path
    autogroup: str  # e.g. "/autogroup-420"; "" when /proc has none


def cpu_cgroup(text: str) -> str:
    """The cpu controller's cgroup in a ``/proc/<pid>/cgroup``: the cgroup v1 line that names ``cpu``,
    else the cgroup v2 line (``0::``), else ``/``."""
    unified = "/"
    for line in text.splitlines():
        hierarchy, controllers, path = line.split(":", 2)
        if "cpu" in controllers.split(","):
            return path
        if hierarchy == "0" and not controllers:
            unified = path
    return unified


def autogroup_name(text: str) -> str:
    """``/autogroup-420`` of a ``/proc/<pid>/autogroup`` (``/autogroup-420 nice 0``)."""
    return text.split()[0] if text.strip() else ""


def same_group(a: SchedGroup, b: SchedGroup, autogroup_enabled: bool) -> bool:
    """Whether the scheduler puts ``a`` and ``b`` in one group: one cgroup and, in the root cgroup with
    autogroup on, one session's autogroup."""
    if a.cgroup != b.cgroup:
        return False
    if a.cgroup != "/" or not autogroup_enabled:
        return True
    return a.autogroup == b.autogroup


def sched_group(pid: int) -> SchedGroup | None:
    """The group of ``pid``, or None when its ``/proc`` cannot be read (gone, another user's)."""
    cgroup = read_proc(f"/proc/{pid}/cgroup")
    if cgroup is None:
        return None
    return SchedGroup(cpu_cgroup(cgroup), autogroup_name(read_proc(f"/proc/{pid}/autogroup") or ""))


def shares_group_with(pid: int) -> bool | None:
    """Whether ``pid`` shares this process's scheduling group (and so the load generator's, which
    runs in it or is started from it); None when that cannot be read."""
    server, here = sched_group(pid), sched_group(os.getpid())
    if server is None or here is None:
        return None
    return same_group(server, here, (read_proc(AUTOGROUP_SWITCH) or "0").strip() == "1")

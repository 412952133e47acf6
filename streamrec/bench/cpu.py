"""The CPU time a server spends, read from ``/proc``: ``bench serve`` divides it by the requests of a phase.

A server is a process tree (``serve --processes N`` forks N children), so its CPU time is the sum over
the root and every descendant of ``utime + stime + cutime + cstime`` (``/proc/<pid>/stat`` fields 14 to
17, in clock ticks, ``os.sysconf("SC_CLK_TCK")``). ``cutime + cstime`` hold the children that exited
and were waited for: a helper that ends during a phase keeps its time in the sum instead of taking it
away. What was in them before the phase cancels out in the difference. Threads (gRPC's, the pipeline
pool's) are counted in their process's fields.

The server to measure is the process tree that listens on the target's port, found through
``/proc/net/tcp*`` and the processes' open sockets (``streamrec.bench.startup``), when no pid is given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from streamrec.bench.startup import fd_links, listening_inodes, parent_of, process_tree, read_proc
from streamrec.errors import ConfigError

__all__ = ["CLOCK_TICKS", "blas_kernels", "cpu_ticks", "find_server", "listening_pids", "process_cpu_s", "server_root",
           "tree_cpu_s"]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def blas_kernels() -> str:
    """numpy's BLAS and the kernels it picked (threadpoolctl), e.g. ``openblas SkylakeX``: the dense
    products of the models and the ranker run on them, and ``OPENBLAS_CORETYPE``, which some machines
    set, can pick slower ones than OpenBLAS's own choice. Processes started from here inherit it.
    scipy and faiss bring BLAS libraries of their own; numpy's is the one named (all, when none is
    found under numpy's folders)."""
    import numpy
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    home = Path(numpy.__file__).resolve().parent
    own = [i for i in blas if Path(i.get("filepath", "")).resolve().parent.name in (f"{home.name}.libs", ".libs")
           or str(Path(i.get("filepath", "")).resolve()).startswith(str(home))]
    found = list(dict.fromkeys(f"{i.get('internal_api')} {i.get('architecture')}" for i in own or blas))
    coretype = os.environ.get("OPENBLAS_CORETYPE")
    return (", ".join(found) or "none found") + (f" (OPENBLAS_CORETYPE={coretype})" if coretype else "")


def cpu_ticks(stat: str) -> int:
    """``utime + stime + cutime + cstime`` of one ``/proc/<pid>/stat`` line. The command name may hold
    spaces and parentheses, so fields are counted after the last ``)``: state is the first, utime the 12th."""
    fields = stat.rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15])


def tree_cpu_s(root: int) -> float:
    """CPU seconds of ``root`` and every live descendant of it (a process gone meanwhile counts 0)."""
    return sum(process_cpu_s(root).values())


def process_cpu_s(root: int) -> dict[int, float]:
    """CPU seconds of ``root`` and of each live descendant, by pid: how a server of several processes
    shared its work."""
    stats = {pid: read_proc(f"/proc/{pid}/stat") for pid in process_tree(root)}
    return {pid: cpu_ticks(stat) / CLOCK_TICKS for pid, stat in stats.items() if stat}


def listening_pids(port: int) -> list[int]:
    """Processes (of those this user may inspect) that hold a socket listening on ``port``."""
    inodes = set().union(*(listening_inodes(read_proc(f"/proc/net/{t}") or "", port) for t in ("tcp", "tcp6")))
    if not inodes:
        return []
    return sorted(int(e) for e in os.listdir("/proc") if e.isdigit() and any(
        link.startswith("socket:[") and int(link[8:-1]) in inodes for link in fd_links(int(e))))


def server_root(holders: Sequence[int], parents: Mapping[int, int], cmdlines: Mapping[int, str]) -> int:
    """The one root of the processes that listen: from each, up through parents with the same command
    line (forked by ``serve --processes``, which may itself hold no socket)."""
    roots = set()
    for pid in holders:
        while parents.get(pid) in cmdlines and cmdlines[parents[pid]] == cmdlines.get(pid):
            pid = parents[pid]
        roots.add(pid)
    if len(roots) != 1:
        raise ConfigError(f"the processes listening on the port ({sorted(holders)}) are not one server's tree: "
                          "give --server-pid")
    return roots.pop()


def find_server(port: int) -> int:
    """The root pid of the server listening on ``port`` on this machine."""
    holders = listening_pids(port)
    if not holders:
        raise ConfigError(f"no process of this user listens on port {port} on this machine, so its CPU cannot be "
                          "read: give --server-pid, or --start-server")
    parents, cmdlines = {}, {}
    for pid in {*holders, *(p for h in holders for p in _ancestors(h))}:
        stat, cmdline = read_proc(f"/proc/{pid}/stat"), read_proc(f"/proc/{pid}/cmdline")
        if stat is not None and cmdline is not None:
            parents[pid], cmdlines[pid] = parent_of(stat), cmdline
    return server_root(holders, parents, cmdlines)


def _ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1 and (stat := read_proc(f"/proc/{pid}/stat")) is not None:
        pid = parent_of(stat)
        found.append(pid)
    return found

"""The scheduling group of a server against the bench's: parsed from ``/proc`` texts, decided by the
scheduler's rules, and read for real children, one in this session and one in a session of its own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from streamrec.bench.sched_group import (
    AUTOGROUP_SWITCH,
    SchedGroup,
    autogroup_name,
    cpu_cgroup,
    same_group,
    sched_group,
    shares_group_with,
)


def test_the_cpu_cgroup_is_the_v1_line_naming_cpu_else_the_v2_line() -> None:
    v1 = "9:name=systemd:/\n4:memory:/job/7\n2:cpu,cpuacct:/svc/server\n0::/\n"
    assert cpu_cgroup(v1) == "/svc/server"
    assert cpu_cgroup("3:cpuset:/x\n1:cpu:/\n0::/\n") == "/"  # cpuset is not cpu
    assert cpu_cgroup("0::/system.slice/streamrec.service\n") == "/system.slice/streamrec.service"
    assert cpu_cgroup("") == "/"


def test_the_autogroup_is_its_name_without_the_nice() -> None:
    assert autogroup_name("/autogroup-420 nice 0\n") == "/autogroup-420"
    assert autogroup_name("") == ""


@pytest.mark.parametrize(("a", "b", "enabled", "shared"), [
    (SchedGroup("/", "/autogroup-1"), SchedGroup("/", "/autogroup-1"), True, True),
    (SchedGroup("/", "/autogroup-1"), SchedGroup("/", "/autogroup-2"), True, False),  # sessions apart
    (SchedGroup("/", "/autogroup-1"), SchedGroup("/", "/autogroup-2"), False, True),  # autogroup off
    (SchedGroup("/pod/a", "/autogroup-1"), SchedGroup("/pod/a", "/autogroup-2"), True, True),  # not root: no autogroup
    (SchedGroup("/pod/a", "/autogroup-1"), SchedGroup("/pod/b", "/autogroup-1"), True, False),  # cgroups apart
])
def test_groups_are_shared_by_the_schedulers_rules(a: SchedGroup, b: SchedGroup, enabled: bool, shared: bool) -> None:
    assert same_group(a, b, enabled) is shared
    assert same_group(b, a, enabled) is shared


@pytest.mark.parametrize("own_session", [False, True])
def test_a_child_shares_the_group_unless_its_session_is_its_own(own_session: bool) -> None:
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE,
                          start_new_session=own_session) as child:
        try:
            server, here = sched_group(child.pid), sched_group(os.getpid())
            shared = shares_group_with(child.pid)
        finally:
            child.kill()
    assert server is not None and here is not None
    assert server.cgroup == here.cgroup
    switch = Path(AUTOGROUP_SWITCH)  # absent from kernels built without autogroup
    autogroups = switch.exists() and switch.read_text().strip() == "1" and here.cgroup == "/"
    if not own_session:
        assert server.autogroup == here.autogroup and shared is True
    else:
        assert shared is not autogroups
        if here.autogroup:
            assert server.autogroup != here.autogroup


def test_a_process_that_is_gone_has_no_group() -> None:
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    assert sched_group(int(child.stdout)) is None and shares_group_with(int(child.stdout)) is None

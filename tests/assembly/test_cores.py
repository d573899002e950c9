"""`modelyard up`'s default number of gateway processes: the cores the process may use, a
cgroup's CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`) bounding its CPU affinity."""

from __future__ import annotations

import os
from pathlib import Path

from modelyard.assembly.cores import available_cores

AFFINITY = len(os.sched_getaffinity(0))


def _cgroups(tmp_path: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text(membership)
    return root, proc


def test_without_a_quota_the_affinity_counts(tmp_path: Path) -> None:
    root, proc = _cgroups(tmp_path, "0::/app\n", {"app/cpu.max": "max 100000\n"})
    assert available_cores(root, proc) == AFFINITY
    assert available_cores(tmp_path / "none", tmp_path / "no-such-file") == AFFINITY


def test_a_v2_quota_bounds_it_rounded_up_and_a_parents_counts_too(tmp_path: Path) -> None:
    root, proc = _cgroups(tmp_path, "0::/app/job\n", {"app/job/cpu.max": "50000 100000\n"})
    assert available_cores(root, proc) == 1  # half a CPU: one process
    root, proc = _cgroups(
        tmp_path / "b",
        "0::/app/job\n",
        {"app/job/cpu.max": "max 100000\n", "app/cpu.max": "150000 100000\n"},
    )
    assert available_cores(root, proc) == min(AFFINITY, 2)  # 1.5 CPUs use both, in part


def test_a_v1_quota_of_the_cpu_controller_bounds_it(tmp_path: Path) -> None:
    membership = "4:memory:/x\n2:cpu,cpuacct:/pod\n0::/\n"
    files = {
        "cpu,cpuacct/pod/cpu.cfs_quota_us": "100000\n",
        "cpu,cpuacct/pod/cpu.cfs_period_us": "100000\n",
    }
    root, proc = _cgroups(tmp_path, membership, files)
    assert available_cores(root, proc) == 1
    files["cpu,cpuacct/pod/cpu.cfs_quota_us"] = "-1\n"  # none
    root, proc = _cgroups(tmp_path / "b", membership, files)
    assert available_cores(root, proc) == AFFINITY


def test_this_machine_gives_at_least_one_and_no_more_than_its_affinity() -> None:
    assert 1 <= available_cores() <= AFFINITY

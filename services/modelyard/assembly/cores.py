"""How many cores this process may use: `modelyard up`'s default number of gateway processes.

The CPU affinity (what `nproc` counts), bounded by the CPU quota of the process's cgroup
and of every cgroup above it: a container limited to 2 CPUs on a 64-core host gets 2
processes, not 64. cgroup v2 keeps the quota in ``cpu.max`` ("200000 100000": 2 CPUs;
"max": none); v1 in the cpu controller's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``
(-1: none). A quota of 1.5 CPUs counts as 2: the process may use both, in part.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def available_cores(root: Path = CGROUP_ROOT, membership: Path = PROC_CGROUP) -> int:
    """The cores this process may use, at least 1 (see the module doc)."""
    affinity = getattr(os, "sched_getaffinity", None)
    cores = len(affinity(0)) if affinity is not None else (os.cpu_count() or 1)
    quota = _cgroup_quota(root, membership)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def _cgroup_quota(root: Path, membership: Path) -> float | None:
    """The least CPU quota over the process's cgroup and its parents, in CPUs; None: none."""
    try:
        lines = membership.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2: "0::/path"
            quotas += _along(root, path, _v2_quota)
        elif "cpu" in controllers.split(","):  # v1: "4:cpu,cpuacct:/path"
            for mount in (controllers, "cpu", "cpu,cpuacct"):
                if (root / mount).is_dir():
                    quotas += _along(root / mount, path, _v1_quota)
                    break
    return min(quotas) if quotas else None


def _along(base: Path, path: str, quota_of: Callable[[Path], float | None]) -> list[float]:
    """The quotas set in `path`'s cgroup under `base` and in each one above it."""
    out: list[float] = []
    here = Path(path.strip() or "/")
    for cgroup in (here, *here.parents):
        found = quota_of(base / str(cgroup).lstrip("/"))
        if found is not None:
            out.append(found)
    return out


def _v2_quota(cgroup: Path) -> float | None:
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(cgroup: Path) -> float | None:
    try:
        quota = int((cgroup / "cpu.cfs_quota_us").read_text())
        period = int((cgroup / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else quota / period

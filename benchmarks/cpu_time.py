"""CPU time of a process, as the benchmarks that split a run's CPU between sides measure it."""

from __future__ import annotations

import os
import resource
from pathlib import Path


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU time, every thread included, of a process: this one when ``pid`` is
    None (getrusage), another through /proc."""
    if pid is None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

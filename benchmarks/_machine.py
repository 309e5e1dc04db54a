"""What every benchmark prints about where it ran: the CPU's name and the inputopt commit measured.

The benchmarks run as scripts (``python benchmarks/bench_*.py``), so their folder is on ``sys.path`` and
they import this module as ``from _machine import cpu_name, inputopt_revision``.
"""

from __future__ import annotations

import os
import platform
import subprocess

import inputopt


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def inputopt_revision() -> str:
    """`` (commit abc1234)`` of the inputopt being measured, noting uncommitted changes; ``""`` outside git."""
    here = os.path.dirname(os.path.abspath(inputopt.__file__))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=False).stdout.strip()
        dirty = subprocess.run(["git", "--no-optional-locks", "status", "--porcelain", "--", "."], cwd=here,
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    return f" (commit {commit}{', with uncommitted changes in inputopt/' if dirty else ''})" if commit else ""

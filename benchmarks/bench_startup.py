"""Start-up of ``inputopt layers digits``: the package at one commit against the working tree, side by side.

Run from the repository root (about a minute on 2 CPU cores):

    python benchmarks/bench_startup.py --old 7482fa3 --reps 7

The old side is ``git archive OLD inputopt`` unpacked into a temporary folder; the new side is this working
tree's ``inputopt``. Each run is a fresh interpreter, ``python -c "from inputopt.cli import main;
main(['layers', 'digits'])"`` started in the side's folder (so that its ``inputopt`` is the one imported,
which the run checks), with the interpreter that runs this script. After one untimed warm-up run per side
(the file cache), the sides alternate A B, B A, A B, ... for ``--reps`` repetitions each; the script prints
the median and the minimum of the wall time and of the CPU time (user + system, from the child's resource
usage), the new/old ratio of the medians, and whether each side imported Lightning.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CODE = ("import sys; from inputopt.cli import main; main(['layers', 'digits']); import inputopt; "
        "print('INPUTOPT', inputopt.__file__, 'lightning' in sys.modules, file=sys.stderr)")


def run(folder: Path) -> tuple[float, float, str, bool]:
    """One run in ``folder``: wall seconds, CPU seconds, the ``inputopt`` imported, whether Lightning was."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CODE], cwd=folder, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    _, path, lightning = done.stderr.strip().splitlines()[-1].split()
    return wall, cpu, path, lightning == "True"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the commit of the old side")
    parser.add_argument("--reps", type=int, default=7)
    args = parser.parse_args()
    old_commit = subprocess.run(["git", "rev-parse", "--short", args.old], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
    new_commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(["git", "archive", args.old, "inputopt"], cwd=ROOT, capture_output=True,
                                 check=True).stdout
        tarfile.open(fileobj=BytesIO(archive)).extractall(tmp, filter="data")
        sides = {f"old ({old_commit})": Path(tmp), f"new ({new_commit})": ROOT}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
        lightning: dict[str, bool] = {}
        for name, folder in sides.items():  # warm-up, and the check that each side imports its own package
            _, _, path, lightning[name] = run(folder)
            if not Path(path).resolve().is_relative_to(folder.resolve()):
                raise RuntimeError(f"{name} imported {path}, not the package in {folder}")
        names = list(sides)
        for rep in range(args.reps):
            for name in names if rep % 2 == 0 else names[::-1]:
                wall, cpu, _, _ = run(sides[name])
                times[name].append((wall, cpu))
    print(f"inputopt layers digits, {args.reps} runs per side, interleaved; python {sys.version.split()[0]}")
    print(f"{'side':<24} {'wall median':>12} {'wall min':>9} {'CPU median':>11} {'CPU min':>8}  imports lightning")
    medians = {}
    for name, rows in times.items():
        walls, cpus = [w for w, _ in rows], [c for _, c in rows]
        medians[name] = statistics.median(walls), statistics.median(cpus)
        print(f"{name:<24} {medians[name][0]:>11.2f}s {min(walls):>8.2f}s {medians[name][1]:>10.2f}s "
              f"{min(cpus):>7.2f}s  {lightning[name]}")
    (old_wall, old_cpu), (new_wall, new_cpu) = medians.values()
    print(f"new/old: wall {new_wall / old_wall:.2f}, CPU {new_cpu / old_cpu:.2f}")


if __name__ == "__main__":
    main()

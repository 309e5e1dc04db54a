"""Start-up times side by side: ``import torch`` against ``from inputopt.attacks import PGD`` and ``inputopt layers
digits``, each in a fresh interpreter.

Run from the repository root (about a minute on 2 CPU cores):

    python benchmarks/bench_startup.py --reps 7

Each case is a fresh ``python -c ...`` with the interpreter that runs this script, started in the repository
root (so that its ``inputopt`` is this working tree's, which the run checks):

- ``torch``: ``import torch``, the floor any inputopt command pays;
- ``attacks``: ``from inputopt.attacks import PGD``, the core (it must not import Lightning);
- ``layers``: ``from inputopt.cli import main; main(['layers', 'digits'])``, the ``inputopt layers digits`` command.

After one untimed warm-up run per case (the file cache), the cases alternate in rotating order for ``--reps``
repetitions each; the script prints the median and the minimum of the wall time and of the CPU time (user +
system, from the child's resource usage), each case's ratio to ``torch`` (medians), and whether each case
imported Lightning. ``--old COMMIT`` adds the two inputopt cases of ``git archive COMMIT inputopt`` unpacked into
a temporary folder, for a before/after comparison.
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
REPORT = "; import sys; print('LIGHTNING', 'lightning' in sys.modules, file=sys.stderr)"
INPUTOPT = "; import inputopt; print('INPUTOPT', inputopt.__file__, file=sys.stderr)"
CASES = {
    "torch": "import torch" + REPORT,
    "attacks": "from inputopt.attacks import PGD" + REPORT + INPUTOPT,
    "layers": "from inputopt.cli import main; main(['layers', 'digits'])" + REPORT + INPUTOPT,
}


def run(code: str, folder: Path) -> tuple[float, float, dict[str, str]]:
    """One fresh interpreter running ``code`` in ``folder``: wall seconds, CPU seconds, what it reported."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, check=True,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report = dict(line.split(" ", 1) for line in done.stderr.splitlines() if line.startswith(("LIGHTNING", "INPUTOPT")))
    return wall, cpu, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--old", default=None, help="also time the inputopt cases at this commit")
    args = parser.parse_args()
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    with tempfile.TemporaryDirectory() as tmp:
        cases = {name: (code, ROOT) for name, code in CASES.items()}
        if args.old is not None:
            archive = subprocess.run(["git", "archive", args.old, "inputopt"], cwd=ROOT, capture_output=True,
                                     check=True).stdout
            tarfile.open(fileobj=BytesIO(archive)).extractall(tmp, filter="data")
            cases.update({f"{name} @{args.old}": (CASES[name], Path(tmp)) for name in ("attacks", "layers")})
        lightning = {}
        for name, (code, folder) in cases.items():  # warm-up, and the check that each imports its own package
            _, _, report = run(code, folder)
            lightning[name] = report["LIGHTNING"] == "True"
            if "INPUTOPT" in report and not Path(report["INPUTOPT"]).resolve().is_relative_to(folder.resolve()):
                raise RuntimeError(f"{name} imported {report['INPUTOPT']}, not the package in {folder}")
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        names = list(cases)
        for rep in range(args.reps):
            order = names[rep % len(names):] + names[:rep % len(names)]
            for name in order if rep % 2 == 0 else order[::-1]:
                wall, cpu, _ = run(*cases[name])
                times[name].append((wall, cpu))
    print(f"start-up, {args.reps} fresh interpreters per case, interleaved; inputopt {commit}; "
          f"python {sys.version.split()[0]}")
    print(f"{'case':<20} {'wall median':>12} {'wall min':>9} {'CPU median':>11} {'CPU min':>8} {'wall/torch':>11} "
          f"{'CPU/torch':>10}  imports lightning")
    medians = {name: (statistics.median(w for w, _ in rows), statistics.median(c for _, c in rows))
               for name, rows in times.items()}
    for name, rows in times.items():
        wall, cpu = medians[name]
        print(f"{name:<20} {wall:>11.2f}s {min(w for w, _ in rows):>8.2f}s {cpu:>10.2f}s "
              f"{min(c for _, c in rows):>7.2f}s {wall / medians['torch'][0]:>11.2f} {cpu / medians['torch'][1]:>10.2f}"
              f"  {lightning[name]}")


if __name__ == "__main__":
    main()

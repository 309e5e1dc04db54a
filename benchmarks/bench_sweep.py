"""Units per second: N units batched against the same N units one at a time; and a sweep on 1 and 2 processes.

Run from the repository root (a few minutes on 2 CPU cores):

    python benchmarks/bench_sweep.py --units 32 --steps 50

Part 1, in this process: the digits model (inputopt zoo), ``ChannelSum`` on ``features.4`` (32 channels),
the multi-scale edge energy prior, Adam, ``--steps`` steps. *batched* is one ``Trainer.fit`` of a module
holding all N units (one image each); *one at a time* is N fits of one unit each, the loop a user writes
without batching. Both are timed from module construction to the end of ``fit``, and both give the same
images (the largest difference is printed).

Part 2, in subprocesses: the ``inputopt sweep`` command (a ``FeatureSweep`` under ``Trainer.test``) on the
same N units in chunks of ``--units-per-batch``, with ``--trainer.devices 1`` and with ``--trainer.devices 2
--trainer.strategy ddp`` on CPU processes (gloo): each process optimizes its own chunks. Wall time of the
whole command (process start-up included) and of its test loop (from ``sweep.yaml``, written at setup, to
the last unit's file), and the largest difference between the images of the two runs. ``--threads`` sets
the torch threads per process (default: torch's and Lightning's choice).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from inputopt import ChannelSum, InputOptimization, MultiScaleEdgeEnergy, PixelImage
from inputopt.problem import Problem

from _machine import cpu_name

ROOT = Path(__file__).resolve().parents[1]


def fit(units: list[int], steps: int) -> torch.Tensor:
    module = InputOptimization(Problem("digits",
                                       ChannelSum("features.4", channel=units if len(units) > 1 else units[0]),
                                       [MultiScaleEdgeEnergy(weight=0.3)], param=PixelImage(mean=0.5)),
                               image_shape=(1, 32, 32))
    Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="cpu").fit(module)
    return module.images()


def sweep_seconds(units: int, steps: int, devices: int, units_per_batch: int, workdir: Path,
                  threads: int = 0) -> tuple[float, float]:
    """One ``inputopt sweep`` command, run in ``workdir`` (its results in ``workdir/sweep``): its wall time, and
    the time of its test loop (from ``sweep.yaml``, written at setup, to the last unit's file), with ``threads``
    torch threads per process (0: torch's default for one process, all cores; Lightning's for ddp on CPU, the
    cores divided by the processes)."""
    args = [str(Path(sys.executable).with_name("inputopt")), "sweep", "--units_per_batch", str(units_per_batch),
            "--sweep_dir", "sweep", "--config", str(ROOT / "configs" / "digits.yaml"),
            "--model.problem.objective", json.dumps({"class_path": "ChannelSum",
                                             "init_args": {"layer": "features.4", "channel": list(range(units))}}),
            "--trainer.max_steps", str(steps), "--trainer.enable_progress_bar", "false",
            "--trainer.accelerator", "cpu", "--trainer.devices", str(devices)]
    if devices > 1:
        args += ["--trainer.strategy", "ddp"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    start = time.perf_counter()
    done = subprocess.run(args, cwd=workdir, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    out = workdir / "sweep"
    loop = max(p.stat().st_mtime for p in (out / "units").iterdir()) - (out / "sweep.yaml").stat().st_mtime
    return seconds, loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--units-per-batch", type=int, default=16, help="chunk size of part 2 (default 16)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per process in part 2 (default 0: one process all cores, 2 ddp processes "
                             "half each)")
    parser.add_argument("--no-batching", action="store_true", help="skip part 1")
    parser.add_argument("--no-devices", action="store_true", help="skip part 2")
    args = parser.parse_args()
    units = list(range(args.units))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({cpu_name()}); "
          f"{args.units} units of digits features.4, {args.steps} steps")
    if not args.no_batching:
        fit(units[:2], 2)  # warm-up

        start = time.perf_counter()
        batched = fit(units, args.steps)
        t_batched = time.perf_counter() - start
        start = time.perf_counter()
        singles = torch.cat([fit([u], args.steps) for u in units])
        t_single = time.perf_counter() - start
        # the same images either way, up to float rounding (which Adam amplifies a little over many steps)
        print(f"max |batched - one at a time| = {(batched - singles).abs().max():.2g} "
              f"(images span {batched.min():.2f}..{batched.max():.2f})")
        print(f"batched        {t_batched:7.2f} s  {args.units / t_batched:7.2f} units/s")
        print(f"one at a time  {t_single:7.2f} s  {args.units / t_single:7.2f} units/s")
        print(f"ratio          {t_single / t_batched:7.1f}x  (batched / one at a time, units per second)")

    if not args.no_devices:
        rows, images = [], {}
        for devices in (1, 2):
            with tempfile.TemporaryDirectory() as workdir:
                wall, loop = sweep_seconds(args.units, args.steps, devices, args.units_per_batch, Path(workdir),
                                           args.threads)
                images[devices] = torch.load(Path(workdir) / "sweep" / "input.pt")
            rows.append((wall, loop))
        threads = f"{args.threads} thread(s) per process" if args.threads else "default threads"
        print(f"inputopt sweep, chunks of {args.units_per_batch} units, {threads}: whole command (start-up "
              f"included) | test loop (the chunks, from setup to the last unit's file)")
        for devices, (wall, loop) in zip((1, 2), rows):
            what = "1 process      " if devices == 1 else "2 ddp processes"
            print(f"  {what} {wall:7.2f} s ({args.units / wall:6.2f} units/s) | {loop:6.2f} s "
                  f"({args.units / loop:6.2f} units/s)")
        (w1, l1), (w2, l2) = rows
        print(f"  speed-up 2 vs 1 process: whole command {w1 / w2:.2f}x, test loop {l1 / l2:.2f}x")
        print(f"  max |2 processes - 1 process| = {(images[2] - images[1]).abs().max():.2g}")


if __name__ == "__main__":
    main()

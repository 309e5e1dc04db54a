"""Units per second: N units batched against the same N units one at a time; and scaling with processes.

Run from the repository root (about two minutes on 2 CPU cores):

    python benchmarks/bench_sweep.py --units 32 --steps 50

Part 1, in this process: the digits model (inputopt zoo), ``ChannelSum`` on ``features.4`` (32 channels),
the multi-scale edge energy prior, Adam, ``--steps`` steps. *batched* is one ``Trainer.fit`` of a module
holding all N units (one image each); *one at a time* is N fits of one unit each, the loop a user writes
without batching. Both are timed from module construction to the end of ``fit``, and both give the same
images (the largest difference is printed). Part 2, in subprocesses: the ``inputopt fit`` command on the same N units with
``--trainer.devices 1`` and with ``--trainer.devices 2 --trainer.strategy ddp`` on CPU processes (gloo),
wall time including process start-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from inputopt import ChannelSum, InputOptimization, MultiScaleEdgeEnergy, PixelImage

ROOT = Path(__file__).resolve().parents[1]


def fit(units: list[int], steps: int) -> torch.Tensor:
    module = InputOptimization("digits", ChannelSum("features.4", channel=units if len(units) > 1 else units[0]),
                               [MultiScaleEdgeEnergy(weight=0.3)], image_shape=(1, 32, 32),
                               param=PixelImage(mean=0.5))
    Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="cpu").fit(module)
    return module.images()


def command_seconds(units: int, steps: int, devices: int) -> float:
    args = [str(Path(sys.executable).with_name("inputopt")), "fit", "--config", str(ROOT / "configs" / "digits.yaml"),
            "--model.objective", '{"class_path": "ChannelSum", "init_args": {"layer": "features.4", "channel": '
            f'{list(range(units))}}}}}', "--trainer.max_steps", str(steps), "--trainer.logger", "false",
            "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar",
            "false", "--trainer.accelerator", "cpu", "--trainer.devices", str(devices)]
    if devices > 1:
        args += ["--trainer.strategy", "ddp"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore")
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-2000:])
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--no-devices", action="store_true", help="skip part 2")
    args = parser.parse_args()
    units = list(range(args.units))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs; "
          f"{args.units} units of digits features.4, {args.steps} steps")
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
        t1 = command_seconds(args.units, args.steps, 1)
        t2 = command_seconds(args.units, args.steps, 2)
        print(f"inputopt fit, 1 process      {t1:7.2f} s  {args.units / t1:7.2f} units/s")
        print(f"inputopt fit, 2 ddp processes {t2:6.2f} s  {args.units / t2:7.2f} units/s  (speed-up {t1 / t2:.2f}x)")


if __name__ == "__main__":
    main()

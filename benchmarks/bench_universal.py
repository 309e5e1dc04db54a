"""A universal perturbation: SharedInputOptimization under Trainer.fit against a plain PyTorch loop over the same
DataLoader, per step; and the same fit on 1 and on 2 CPU processes (DDP, gloo).

Run from the repository root:

    python benchmarks/bench_universal.py --steps 60 --reps 3

Part 1, in this process: the digits model (inputopt zoo), the training digits, batches of ``--batch`` samples,
``Margin`` (untargeted, against each clean prediction), ``δ`` in the L∞ ball of radius 0.2, a sign-gradient
step of 0.005 and the projection. *plain* is the loop a user writes: ``x = clamp(images + δ, 0, 1)``, a no-grad
forward of the clean images for the labels, the forward of ``x``, the margin's mean, backward, the sign step,
the clamp of ``δ``. *inputopt* is ``Trainer(max_steps=N, logger=False, ...).fit(SharedInputOptimization(...))``
on the same samples (its own sampler). *bare* is the plain step inside a bare ``LightningModule`` under the same
``Trainer``: no logging, no checks; it separates Lightning's own loop from what inputopt adds. *no-log* is
*inputopt* with its ``self.log`` calls made no-ops: what Lightning's logging of the step's terms costs. Reported: the median duration of steps 3..N (time between
``on_train_batch_end`` calls; loop iterations for *plain*, data loading included on both sides) and the whole run
divided by N (setup included). Repetitions are interleaved A B, B A, ...

Part 2, in subprocesses: the same fit with ``--devices 1 --batch B`` and ``--devices 2 --batch B/2`` (the same
global batch; ``--threads`` torch threads per process): the median step time of the fit, and steps per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch.utils.data import DataLoader

from _machine import cpu_name, inputopt_revision
from inputopt._notices import quiet_commands
from inputopt.cli import close_process_group
from inputopt.data import Digits
from inputopt.networks import build_network
from inputopt.objectives import Margin
from inputopt.optim import SignGradient
from inputopt.params import PixelImage
from inputopt.problem import Problem
from inputopt.runners.shared import SharedInputOptimization
from inputopt.transforms.insert import AddPerturbation

ROOT = Path(__file__).resolve().parents[1]
EPS, LR = 0.2, 0.005


class StepTimes(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter())


def median_step(times: list[float]) -> float:
    return statistics.median(b - a for a, b in zip(times[2:], times[3:]))


def run_inputopt(data, steps: int, batch: int, devices: int = 1, log: bool = True) -> tuple[float, float]:
    start = time.perf_counter()
    module = SharedInputOptimization(Problem("digits", Margin(), param=PixelImage(std=0, eps=EPS)), AddPerturbation(),
                                     data, optimizer=partial(SignGradient, lr=LR), batch_size=batch)
    if not log:  # what Lightning's logging of the step's terms costs (monitors and TensorBoard need it)
        module.log = lambda *args, **kwargs: None
    times = StepTimes()
    Trainer(accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto", max_steps=steps,
            logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[times], limit_val_batches=0).fit(module)
    return median_step(times.times), (time.perf_counter() - start) / steps


def run_plain(data, steps: int, batch: int) -> tuple[float, float]:
    start = time.perf_counter()
    network = build_network("digits").eval().requires_grad_(False)
    loader = DataLoader(data, batch_size=batch, shuffle=True, drop_last=True,
                        generator=torch.Generator().manual_seed(0))
    delta = torch.zeros(1, *data[0][0].shape, requires_grad=True)
    times, step = [], 0
    while step < steps:
        for images, _ in loader:
            with torch.no_grad():
                labels = network(images).argmax(1)
            logits = network((images + delta).clamp(0, 1))
            own = logits.gather(1, labels[:, None])[:, 0]
            other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
            loss = -(other - own).mean()
            delta.grad = None
            loss.backward()
            with torch.no_grad():
                delta -= LR * delta.grad.sign()
                delta.clamp_(-EPS, EPS)
            times.append(time.perf_counter())
            step += 1
            if step == steps:
                break
    return median_step(times), (time.perf_counter() - start) / steps


class BareStep(LightningModule):
    """The plain loop's step as a bare LightningModule: δ its only parameter, no logging, no checks. Between
    *plain* and *inputopt*, it shows what Lightning's loop itself costs per step."""

    def __init__(self, network: torch.nn.Module, data, batch: int) -> None:
        super().__init__()
        object.__setattr__(self, "network", network)  # outside the module tree: fit's train() must not reach it
        self.data, self.batch = data, batch
        self.delta = torch.nn.Parameter(torch.zeros(1, *data[0][0].shape))

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=self.batch, shuffle=True, drop_last=True,
                          generator=torch.Generator().manual_seed(0))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0]
        with torch.no_grad():
            labels = self.network(images).argmax(1)
        logits = self.network((images + self.delta).clamp(0, 1))
        own = logits.gather(1, labels[:, None])[:, 0]
        other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
        return -(other - own).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return SignGradient([self.delta], lr=LR)

    def on_train_batch_end(self, *args) -> None:
        with torch.no_grad():
            self.delta.clamp_(-EPS, EPS)


def run_bare(data, steps: int, batch: int) -> tuple[float, float]:
    start = time.perf_counter()
    module = BareStep(build_network("digits").eval().requires_grad_(False), data, batch)
    times = StepTimes()
    Trainer(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[times]).fit(module)
    return median_step(times.times), (time.perf_counter() - start) / steps


CHILD = "--child"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(CHILD, type=int, default=0, help=argparse.SUPPRESS)  # devices, in a subprocess
    args = parser.parse_args()
    quiet_commands()
    torch.set_num_threads(args.threads)
    data = Digits("train")
    if args.child:
        step, whole = run_inputopt(data, args.steps, args.batch, devices=args.child)
        if int(os.environ.get("LOCAL_RANK", "0")) == 0:
            print(f"RESULT {step} {whole}")
        close_process_group()
        return

    print(f"CPU: {cpu_name()}{inputopt_revision()}; torch threads {args.threads}; digits train ({len(data)}), "
          f"batch {args.batch}, {args.steps} steps, {args.reps} repetitions")
    runs = {"plain": run_plain, "bare": run_bare, "inputopt": run_inputopt,
            "no-log": partial(run_inputopt, log=False)}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for run in runs.values():
        run(data, 5, args.batch)  # warm-up
    for rep in range(args.reps):
        for name in (list(runs) if rep % 2 == 0 else list(runs)[::-1]):
            results[name].append(runs[name](data, args.steps, args.batch))
    med = {name: [statistics.median(r[i] for r in rows) for i in (0, 1)] for name, rows in results.items()}
    print("part 1: per step (median of steps 3..N, ms) and whole run / N (ms)")
    for name in runs:
        print(f"  {name:9s} step {1000 * med[name][0]:7.2f}   whole/N {1000 * med[name][1]:7.2f}")
    for name, base in (("bare", "plain"), ("inputopt", "plain"), ("inputopt", "bare"), ("no-log", "bare")):
        print(f"  ratio {name}/{base}: step {med[name][0] / med[base][0]:.3f}, "
              f"whole/N {med[name][1] / med[base][1]:.3f}")

    print(f"part 2: 1 process x batch {args.batch} against 2 processes x batch {args.batch // 2} (DDP, gloo)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONWARNINGS="ignore", OMP_NUM_THREADS=str(args.threads))
    rows = {}
    for devices in (1, 2):
        command = [sys.executable, __file__, "--steps", str(args.steps), "--batch", str(args.batch // devices),
                   "--threads", str(args.threads), CHILD, str(devices)]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
        line = next((l for l in done.stdout.splitlines() if l.startswith("RESULT")), None)
        if line is None:
            raise RuntimeError(done.stderr[-2000:])
        rows[devices] = [float(v) for v in line.split()[1:]]
        print(f"  {devices} process(es): step {1000 * rows[devices][0]:7.2f} ms, {1 / rows[devices][0]:6.1f} steps/s")
    print(f"  speed-up 2 vs 1 process: {rows[1][0] / rows[2][0]:.2f}x")


if __name__ == "__main__":
    main()

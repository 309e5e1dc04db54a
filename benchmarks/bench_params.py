"""Per-step cost of ``FourierImage`` + transforms against ``PixelImage``, and against Lucent's ``render_vis``.

Side by side in one process, on the **same VGG16 object** (torchvision, ``weights=None``,
``torch.manual_seed(0)``), the same layer and channel, one image of ``--size`` pixels, Adam lr 0.05:

* ``lucent`` -- ``lucent.optvis.render.render_vis`` with its defaults: ``param.image(size)`` (FFT
  spectrum, decorrelated colours, sigmoid, sd 0.01), ``transform.standard_transforms`` (pad 12 with 0.5,
  jitter 8, random scale 0.90..1.10, random rotate -10..10 degrees, jitter 4, applied one after the
  other), ``preprocess=True`` (ImageNet normalization), objective ``"features_10:0"`` (minus the mean of
  channel 0 of that layer's output), Adam lr 5e-2 (its default). ``fixed_image_size=size`` (default
  128): without it render_vis upsamples every image smaller than 224 px to 224 px before the network.
  The whole network runs every step (the objective reads a forward hook). Per-step times come from an
  Adam subclass that times each ``step(closure)`` call (zero_grad, transforms, forward, objective,
  backward, update).
* ``fourier+tf`` -- the same set-up written with inputopt::

      InputOptimization(vgg16, ChannelSum("features.10", channel=0),
                        param=FourierImage(decorrelate=True, sigmoid=(0, 1)),
                        transforms=[Pad(12, value=0.5), Jitter(8), RandomScale(0.9, 1.1), RandomRotate(10), Jitter(4)],
                        image_shape=(3, size, size), mean=IMAGENET_MEAN, std=IMAGENET_STD)

  ``ChannelSum`` is the *sum* of the channel's map where Lucent takes the mean: the same gradient
  direction up to a constant factor, the same cost. No prior (Lucent has none). The forward stops after
  the target layer. Jitter, scale and rotation are fused into one ``grid_sample``, which also brings the
  padded view back to ``size`` px (``Transforms(keep_size=True)``, the default since the figures in
  benchmarks/README.md were measured: then the padded ``size + 24`` px image went into the network, as on
  the Lucent side before its ``fixed_image_size`` resize).
* ``pixel`` -- ``PixelImage()``, same objective and normalization, no transforms.
* ``fourier+tf+resize`` (diagnostic) -- ``fourier+tf`` plus a final bilinear resize to ``size`` px
  (a ``Transform`` defined in this script, the same ``Upsample(align_corners=True)`` that Lucent's
  ``fixed_image_size`` appends); with ``keep_size`` the images already have that size, so this row now
  measures only the extra resize.

The ``fourier+tf`` and ``pixel`` variants are timed two ways each: ``loop`` --
``inputopt.optimize(m.param, m.path, N, Adam, seeds=m.row_seeds)``, with a timestamp in its per-step
``callback``; ``fit`` -- ``Trainer(max_steps=N, logger=False, enable_checkpointing=False,
enable_progress_bar=False, enable_model_summary=False).fit(m)``, with a timestamp in a
``Callback.on_train_batch_end``. The diagnostic row is timed as a ``loop`` only.

Method: per layer, one warm-up run of every variant, then ``--reps`` repetitions interleaved
(A B C ..., ... C B A, ...). For every run, ``step`` is the median duration of steps 3..N (the first two
steps are left out on every side), in wall time and in CPU time of this process (``time.process_time``,
which does not count waits while other processes hold the cores; the steadier figure on a shared
machine); the table gives the median over repetitions and, for wall time, also the minimum (the
least-disturbed run). ``run`` is the whole run (construction, set-up, all steps) divided by N. Ratios are
variant / lucent, from figures measured in this run.

CPU only: the script hides GPUs (``CUDA_VISIBLE_DEVICES=""`` before torch is imported) because Lucent
moves its parameters to ``cuda:0`` on its own whenever CUDA is available.

Needs both inputopt and Lucent in one environment (Lucent is not a dependency of inputopt)::

    python -m venv .venv-bench && . .venv-bench/bin/activate
    pip install -e ".[dev]" torch-lucent
    python benchmarks/bench_params.py

See benchmarks/README.md.
"""

from __future__ import annotations

import os

os.environ["CUDA_VISIBLE_DEVICES"] = ""  # Lucent uses cuda:0 by itself whenever CUDA is available

import argparse
import datetime
import gc
import importlib.metadata
import itertools
import logging
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

warnings.filterwarnings("ignore", category=FutureWarning)  # torch.jit.script deprecation in kornia 0.4.1
warnings.filterwarnings("ignore", category=DeprecationWarning)
try:
    from lucent.optvis import param as lucent_param
    from lucent.optvis import render as lucent_render
    from lucent.optvis import transform as lucent_transform
except ImportError as error:
    sys.exit(f"bench_params.py needs Lucent in the same environment as inputopt, and it cannot be imported "
             f"({error}).\nInstall it next to inputopt (it is not one of inputopt's dependencies):\n"
             f"    pip install torch-lucent\n(see benchmarks/README.md, section bench_params.py)")

import lightning
from lightning.pytorch import Callback, Trainer

import inputopt
from inputopt import (
    ChannelSum,
    FourierImage,
    InputOptimization,
    Jitter,
    Pad,
    PixelImage,
    RandomRotate,
    RandomScale,
    StepCallback,
    Transform,
    optimize,
)
from inputopt.networks import NetworkSpec
from inputopt.problem import Problem

from _machine import cpu_name, inputopt_revision

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
LR = 0.05  # render_vis' default optimizer is Adam(lr=5e-2)
SKIP = 2  # steps left out of each run's median step (the first ones carry one-off costs)

logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
logging.getLogger("lightning.fabric").setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*The number of training batches.*")

Stamp = tuple[float, float]  # (wall, cpu)


def _median_after_skip(values: list[float]) -> float:
    """Median of the steps after the first ``SKIP`` (of all of them in a run too short for that: warm-ups)."""
    return statistics.median(values[SKIP:] if len(values) > SKIP else values)


def stamp() -> Stamp:
    return time.perf_counter(), time.process_time()


class Resize(Transform):
    """Bilinear resize to ``size`` x ``size`` (Lucent's ``fixed_image_size`` Upsample); diagnostic only."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, x: Tensor, u: Tensor) -> Tensor:
        return F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=True)


def lucent_layer_name(layer: str) -> str:
    """inputopt's dotted ``features.10`` is Lucent's ``features_10``."""
    return layer.replace(".", "_")


# -- one run of each side -------------------------------------------------------------------------------
def step_summary(start: Stamp, stamps: list[Stamp], end: Stamp, steps: int) -> dict:
    """Per-run figures from the stamps taken at the end of every step (``start``: before construction)."""
    ends = [start] + stamps
    walls = [b[0] - a[0] for a, b in itertools.pairwise(ends)]
    cpus = [b[1] - a[1] for a, b in itertools.pairwise(ends)]
    return {"step_wall": _median_after_skip(walls), "step_cpu": _median_after_skip(cpus),
            "run_wall": (end[0] - start[0]) / steps, "run_cpu": (end[1] - start[1]) / steps}


class TimedAdam(torch.optim.Adam):
    """Adam that stamps the start and end of every ``step(closure)``: one whole render_vis iteration."""

    def __init__(self, params, lr: float = LR) -> None:
        super().__init__(params, lr=lr)
        self.spans: list[tuple[Stamp, Stamp]] = []

    def step(self, closure=None):
        t0 = stamp()
        out = super().step(closure)
        self.spans.append((t0, stamp()))
        return out


def lucent_run(network: nn.Module, layer: str, channel: int, size: int, fixed_size: int | None, steps: int,
               seed: int) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)  # Lucent's transforms draw from np.random
    holder: dict[str, TimedAdam] = {}

    def make_optimizer(params):
        holder["opt"] = TimedAdam(params, lr=LR)
        return holder["opt"]

    start = stamp()
    try:
        lucent_render.render_vis(
            network, f"{lucent_layer_name(layer)}:{channel}",
            param_f=lambda: lucent_param.image(size),  # fft=True, decorrelate=True, sd=0.01
            optimizer=make_optimizer,
            transforms=lucent_transform.standard_transforms,  # the same as transforms=None
            thresholds=(steps,), preprocess=True, progress=False, show_image=False, save_image=False,
            fixed_image_size=fixed_size)
        end = stamp()
    finally:
        # render_vis hooks every submodule and never removes the hooks; inputopt's capture removes its own,
        # so after this there is no hook left on the network.
        for module in network.modules():
            module._forward_hooks.clear()
    spans = holder["opt"].spans
    walls = [b[0] - a[0] for a, b in spans]
    cpus = [b[1] - a[1] for a, b in spans]
    return {"step_wall": _median_after_skip(walls), "step_cpu": _median_after_skip(cpus),
            "run_wall": (end[0] - start[0]) / steps, "run_cpu": (end[1] - start[1]) / steps}


def make_module(network: nn.Module, layer: str, channel: int, size: int, kind: str,
                seed: int) -> InputOptimization:
    if kind == "pixel":
        param, transforms = PixelImage(), []
    else:
        param = FourierImage(decorrelate=True, sigmoid=(0, 1))
        transforms = [Pad(12, value=0.5), Jitter(8), RandomScale(0.9, 1.1), RandomRotate(10), Jitter(4)]
        if kind == "fourier+tf+resize":
            transforms.append(Resize(size))
    return InputOptimization(Problem(NetworkSpec(network, mean=IMAGENET_MEAN, std=IMAGENET_STD),
                                     ChannelSum(layer, channel=channel), param=param, transforms=transforms, seed=seed),
                             image_shape=(3, size, size), optimizer=partial(torch.optim.Adam, lr=LR))


class StampSteps(StepCallback):
    """The loop's per-step timestamp, after each backward (where the fit's StepStamps takes it)."""

    def __init__(self, stamps: list) -> None:
        self.stamps = stamps

    def on_after_backward(self, record, step, terms) -> None:
        self.stamps.append(stamp())


def loop_run(network: nn.Module, layer: str, channel: int, size: int, kind: str, steps: int, seed: int) -> dict:
    stamps: list[Stamp] = []
    start = stamp()
    module = make_module(network, layer, channel, size, kind, seed)
    optimize(module.param, module.path, steps, partial(torch.optim.Adam, lr=LR), seeds=module.row_seeds,
             callbacks=[StampSteps(stamps)])
    end = stamp()
    return step_summary(start, stamps, end, steps)


class StepStamps(Callback):
    def __init__(self) -> None:
        self.stamps: list[Stamp] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stamps.append(stamp())


def fit_run(network: nn.Module, layer: str, channel: int, size: int, kind: str, steps: int, seed: int) -> dict:
    stamps = StepStamps()
    start = stamp()
    module = make_module(network, layer, channel, size, kind, seed)
    trainer = Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", callbacks=[stamps])
    trainer.fit(module)
    end = stamp()
    return step_summary(start, stamps.stamps, end, steps)


# -- the variants -----------------------------------------------------------------------------------------
Runner = Callable[[nn.Module, str, int, int], dict]  # (network, layer, steps, seed) -> figures


def variants(args: argparse.Namespace) -> list[tuple[str, str, Runner]]:
    """(name, network input, runner) for every variant, in the order of the table."""
    size, fixed = args.size, args.lucent_fixed_size or None
    lucent_input = f"{fixed}" if fixed else (f"{max(size, 224)}" if size < 224 else f"{size + 24}±10%")
    rows: list[tuple[str, str, Runner]] = [
        ("lucent render_vis", lucent_input,
         lambda net, layer, steps, seed: lucent_run(net, layer, args.channel, size, fixed, steps, seed)),
    ]
    for kind, net_input in (("fourier+tf", size + 24), ("pixel", size)):
        rows.append((f"inputopt {kind} loop", str(net_input),
                     lambda net, layer, steps, seed, k=kind: loop_run(net, layer, args.channel, size, k, steps, seed)))
        rows.append((f"inputopt {kind} fit", str(net_input),
                     lambda net, layer, steps, seed, k=kind: fit_run(net, layer, args.channel, size, k, steps, seed)))
    if not args.no_diagnostic:
        rows.append(("(diag) inputopt fourier+tf+resize loop", str(size),
                     lambda net, layer, steps, seed: loop_run(net, layer, args.channel, size, "fourier+tf+resize",
                                                              steps, seed)))
    return rows


# -- reporting --------------------------------------------------------------------------------------------
def version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def print_table(layer: str, channel: int, names: list[str], inputs: list[str], results: dict[str, list[dict]]) -> None:
    def fig(name: str, key: str, stat=statistics.median) -> float:
        return stat(r[key] for r in results[name])

    ref = names[0]
    columns = [("step_wall", statistics.median, "step wall med"), ("step_cpu", statistics.median, "step cpu med"),
               ("step_wall", min, "step wall min"), ("run_wall", statistics.median, "run wall med")]
    print(f"\n{layer}, channel {channel}: {len(results[ref])} interleaved reps; seconds per step, and / lucent")
    header = f"{'variant':<40} {'net input':>9} | " + " | ".join(f"{title:>13} {'/lucent':>7}" for *_, title in columns)
    print(header)
    print("-" * len(header))
    for name, net_input in zip(names, inputs):
        cells = [f"{fig(name, key, stat):>13.4f} {fig(name, key, stat) / fig(ref, key, stat):>7.3f}"
                 for key, stat, _ in columns]
        print(f"{name:<40} {net_input:>9} | " + " | ".join(cells))
    for how in ("loop", "fit"):
        fourier, pixel = f"inputopt fourier+tf {how}", f"inputopt pixel {how}"
        print(f"  fourier+tf / pixel ({how}): step wall med {fig(fourier, 'step_wall') / fig(pixel, 'step_wall'):.3f}, "
              f"step cpu med {fig(fourier, 'step_cpu') / fig(pixel, 'step_cpu'):.3f}, "
              f"step wall min {fig(fourier, 'step_wall', min) / fig(pixel, 'step_wall', min):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per run (>= 4)")
    parser.add_argument("--reps", type=int, default=3, help="interleaved repetitions per variant and layer")
    parser.add_argument("--warmup-steps", type=int, default=3, help="steps of the untimed warm-up run per variant")
    parser.add_argument("--size", type=int, default=128, help="image size in pixels (square)")
    parser.add_argument("--lucent-fixed-size", type=int, default=128,
                        help="render_vis' fixed_image_size; 0: Lucent's own default (images < 224 px upsampled to 224)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads; 0: leave torch's default")
    parser.add_argument("--layers", nargs="+", default=["features.10", "features.28"],
                        help="VGG16 layers (dotted names; Lucent gets them with '_')")
    parser.add_argument("--channel", type=int, default=0, help="the channel whose activation is maximized")
    parser.add_argument("--no-diagnostic", action="store_true", help="leave out the fourier+tf+resize row")
    args = parser.parse_args()
    if args.steps < SKIP + 2:
        parser.error(f"--steps must be at least {SKIP + 2}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    network = torchvision.models.vgg16(weights=None).eval()
    network.requires_grad_(False)
    modules = dict(network.named_modules())
    for layer in args.layers:
        if layer not in modules:
            parser.error(f"unknown VGG16 layer {layer!r}; e.g. features.10 (conv 5), features.28 (conv 13)")

    rows = variants(args)
    names, inputs, runners = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    print(f"date      {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"versions  torch {torch.__version__}, torchvision {torchvision.__version__}, lightning "
          f"{lightning.__version__}, torch-lucent {version('torch-lucent')}, kornia {version('kornia')}, "
          f"inputopt {inputopt.__version__}{inputopt_revision()}, python {platform.python_version()}")
    print(f"machine   {cpu_name()}, {os.cpu_count()} logical cores; torch threads {torch.get_num_threads()}")
    print(f"setup     vgg16 (weights=None, seed 0), 1 image {args.size}x{args.size}, Adam lr {LR}, channel "
          f"{args.channel}, {args.steps} steps/run, {args.reps} interleaved reps after a {args.warmup_steps}-step "
          f"warm-up run per variant; step = median of steps {SKIP + 1}..{args.steps} of a run")

    t_total = time.perf_counter()
    for layer in args.layers:
        described = f"{layer} ({type(modules[layer]).__name__})"
        for name, runner in zip(names, runners):
            runner(network, layer, args.warmup_steps, 1000)
        results: dict[str, list[dict]] = {name: [] for name in names}
        for rep in range(args.reps):
            order = list(range(len(names))) if rep % 2 == 0 else list(reversed(range(len(names))))
            for i in order:
                gc.collect()
                figures = runners[i](network, layer, args.steps, rep)
                results[names[i]].append(figures)
                print(f"  [{described}] rep {rep + 1}/{args.reps} {names[i]:<40} step wall {figures['step_wall']:.4f} s"
                      f", cpu {figures['step_cpu']:.4f} s; run wall {figures['run_wall']:.4f} s/step", flush=True)
        print_table(described, args.channel, names, inputs, results)
        print(flush=True)
    print(f"total time {time.perf_counter() - t_total:.0f} s")
    print(f"\nColumns: 'step' = each run's median step (steps {SKIP + 1}..{args.steps}), wall or CPU time of this "
          "process, then the median ('med') or minimum ('min') over the reps; 'run' = whole run (construction, "
          "set-up, all steps) / steps; '/lucent' = variant / lucent render_vis, same layer, this run. "
          "'net input' = the image size the network sees.")


if __name__ == "__main__":
    main()

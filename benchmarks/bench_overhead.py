"""Framework overhead and truncation gain of ``InputOptimization`` against a plain PyTorch loop.

Both sides optimize the same input shape on the same frozen network object with the same objective,
the same prior (``inputopt.functional.multi_scale_edge_energy``) and Adam(lr=0.1), so that only the
framework (Lightning ``Trainer`` + ``InputOptimization``) and the truncated forward differ.

Plain loop (what a user writes by hand; no truncation: an early-layer objective reads a forward hook
but the whole network still runs)::

    x = (torch.randn(B, 3, H, W) * 0.01).requires_grad_()
    opt = torch.optim.Adam([x], lr=0.1)
    for _ in range(N):
        loss = (w * multi_scale_edge_energy(x) - objective(x)).sum()
        opt.zero_grad(); loss.backward(); opt.step()

InputOptimization side, timed from the module's construction to the return of ``fit`` (setup included)::

    module = InputOptimization(Problem(network, objective, [MultiScaleEdgeEnergy(weight=w)]), image_shape=(3, H, W))
    Trainer(max_steps=N, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="cpu").fit(module)

Cases: ``full`` (an output unit of the network), ``early`` (the channel sum of an early layer:
InputOptimization stops the forward there, the plain loop runs the whole network), ``tiny`` (a one-conv
network on 32x32 inputs, where a step costs almost nothing, so the difference is the framework's own
per-step cost; it also runs InputOptimization with ``self.log`` disabled, to show what logging costs).

Repetitions are interleaved (A B, B A, A B, ...) after one warm-up run of each side; medians (and
minimums) over the repetitions are reported. Two times per run: the whole run divided by the steps
(setup included), and the median duration of steps ``--skip + 1 .. N`` (setup excluded), both from
timestamps taken the same way on both sides (after a device synchronization on CUDA). On the CPU the
same figures are also given in CPU time of this process (``time.process_time``), which does not count
the time the process waits while other processes hold the cores: on a shared machine it is the steadier
measure of the work each side does; wall time is what a user waits.

Run ``python benchmarks/bench_overhead.py --help`` for the options; see benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import logging
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torchvision
from torch import Tensor, nn

import lightning
from lightning.pytorch import Callback, Trainer

from inputopt import InputOptimization, Problem
from inputopt.functional import multi_scale_edge_energy
from inputopt.objectives import ChannelSum, UnitActivation
from inputopt.priors import MultiScaleEdgeEnergy

from _machine import cpu_name

Stamp = tuple[float, float]  # (wall seconds, CPU seconds of this process)
CLOCKS = ("wall", "cpu")


def stamp(device: torch.device) -> Stamp:
    """Synchronize the device, then read the wall clock and this process's CPU time."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter(), time.process_time()


# -- the plain PyTorch loop ----------------------------------------------------------------------
def plain_run(network: nn.Module, layer: str, unit: int, shape: tuple[int, int, int, int], steps: int,
              prior_weight: float, device: torch.device) -> dict:
    """Time the hand-written loop; see :func:`_summary` for what is returned."""
    captured: dict[str, Tensor] = {}
    handle = None
    if layer:  # a naive early-layer objective: a hook on the layer, the full forward still runs
        module = dict(network.named_modules())[layer]
        handle = module.register_forward_hook(lambda _m, _i, out: captured.__setitem__("act", out))

    def objective(x: Tensor) -> Tensor:
        out = network(x)
        if layer:
            return captured["act"][:, unit].flatten(1).sum(1)
        return out[:, unit]

    stamps: list[Stamp] = []
    try:
        start = stamp(device)
        x = (torch.randn(shape, device=device) * 0.01).requires_grad_()
        optimizer = torch.optim.Adam([x], lr=0.1)
        first = stamp(device)
        for _ in range(steps):
            loss = (prior_weight * multi_scale_edge_energy(x) - objective(x)).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            stamps.append(stamp(device))
        end = stamp(device)
    finally:
        if handle is not None:
            handle.remove()
    return _summary(start, first, stamps, end)


# -- InputOptimization + Trainer --------------------------------------------------------------------
class _StepClock(Callback):
    """Stamps at the start of the first step and at the end of every step (after the optimizer step and
    the logging)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.first: Stamp | None = None
        self.stamps: list[Stamp] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.first is None:
            self.first = stamp(self.device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.stamps.append(stamp(self.device))


def inputopt_run(network: nn.Module, layer: str, unit: int, shape: tuple[int, int, int, int], steps: int,
                 prior_weight: float, device: torch.device,
                 module_class: type[InputOptimization] = InputOptimization) -> dict:
    """Time InputOptimization + Trainer.fit, from the module's construction to the return of ``fit``.

    The setup runs from the module's construction to the start of the first step: Trainer construction,
    Lightning's fit setup and the objective's shape check (one no-grad forward, truncated like the steps).
    """
    objective = ChannelSum(layer, channel=unit) if layer else UnitActivation(None, unit=unit)
    clock = _StepClock(device)
    start = stamp(device)
    module = module_class(Problem(network, objective, [MultiScaleEdgeEnergy(weight=prior_weight)]),
                          image_shape=shape[1:], batch_size=shape[0])
    trainer = Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="gpu" if device.type == "cuda" else "cpu",
                      devices=[device.index or 0] if device.type == "cuda" else 1, callbacks=[clock])
    trainer.fit(module)
    end = stamp(device)
    if trainer.global_step != steps or clock.first is None:
        raise RuntimeError(f"fit ran {trainer.global_step} steps, expected {steps}")
    return _summary(start, clock.first, clock.stamps, end)


class _NoLogInputOptimization(InputOptimization):
    """Diagnostic only: InputOptimization with ``self.log`` turned into a no-op."""

    def log(self, *args, **kwargs) -> None:
        pass


def inputopt_nolog_run(*args) -> dict:
    """:func:`inputopt_run` with ``self.log`` disabled, to measure what the per-step logging costs."""
    return inputopt_run(*args, module_class=_NoLogInputOptimization)


# -- measurement ----------------------------------------------------------------------------------
SKIP = 2  # set from --skip in main()


def _summary(start: Stamp, first: Stamp, stamps: list[Stamp], end: Stamp) -> dict:
    """Per clock: whole run, setup (to the first step), median duration of steps SKIP+1..N."""
    if not 1 <= SKIP < len(stamps):
        raise ValueError(f"need 1 <= --skip < steps, got skip={SKIP} with {len(stamps)} steps")
    out = {}
    for i, clock in enumerate(CLOCKS):
        out[f"total_{clock}"] = end[i] - start[i]
        out[f"setup_{clock}"] = first[i] - start[i]
        out[f"step_{clock}"] = statistics.median(b[i] - a[i] for a, b in zip(stamps[SKIP - 1:], stamps[SKIP:]))
    return out


class TinyNet(nn.Sequential):
    """A network so small that a step costs almost nothing: what is left is the framework's per-step cost."""

    def __init__(self) -> None:
        super().__init__(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 1000))


def run_case(name: str, network: nn.Module, layer: str, unit: int, shape: tuple[int, int, int, int],
             steps: int, args, device: torch.device, diagnose_log: bool = False) -> dict:
    sides: dict[str, Callable[..., dict]] = {"plain": plain_run, "inputopt": inputopt_run}
    if diagnose_log:
        sides["inputopt_nolog"] = inputopt_nolog_run

    def once(side: str, n: int) -> dict:
        if device.type == "cuda":  # Lightning's teardown moves the module (and so the network) to the CPU
            network.to(device)
        gc.collect()
        return sides[side](network, layer, unit, shape, n, args.prior_weight, device)

    for side in sides:  # warm-up: allocator, oneDNN/cuDNN kernel selection, Lightning's first-call costs
        once(side, max(args.warmup_steps, args.skip + 1))

    results: dict[str, list[dict]] = {s: [] for s in sides}
    for rep in range(args.reps):
        for side in list(sides) if rep % 2 == 0 else list(sides)[::-1]:
            r = once(side, steps)
            results[side].append(r)
            print(f"  [{name}] rep {rep + 1}/{args.reps} {side:14s} wall: total {r['total_wall']:7.3f} s, "
                  f"setup {1000 * r['setup_wall']:6.1f} ms, median step {1000 * r['step_wall']:8.2f} ms | cpu: "
                  f"total {r['total_cpu']:7.3f} s, median step {1000 * r['step_cpu']:8.2f} ms", flush=True)

    row = {"case": name, "steps": steps, "sides": list(sides)}
    for side, runs in results.items():
        for key in runs[0]:
            values = [r[key] for r in runs]
            row[f"{side}_{key}_median"] = statistics.median(values)
            row[f"{side}_{key}_min"] = min(values)
    return row


def print_table(rows: list[dict], clock: str, stat: str) -> None:
    width = max(len(r["case"]) for r in rows) + 2
    header = (f"{'case':{width}s} | {'plain s/step':>12s} | {'inputopt s/step':>15s} | {'ratio':>6s} || "
              f"{'plain step':>10s} | {'inputopt step':>13s} | {'ratio':>6s} | {'delta ms':>8s} || "
              f"{'inputopt setup s':>16s}")
    print(header)
    print("-" * len(header))
    for r in rows:
        def get(side: str, key: str) -> float:
            return r[f"{side}_{key}_{clock}_{stat}"]

        for side in r["sides"][1:]:
            label = r["case"] if side == "inputopt" else "  (diagnostic) same, self.log disabled"
            p, i = get("plain", "total") / r["steps"], get(side, "total") / r["steps"]
            ps, is_ = get("plain", "step"), get(side, "step")
            print(f"{label:{width}s} | {p:12.4f} | {i:15.4f} | {i / p:6.3f} || "
                  f"{ps:10.4f} | {is_:13.4f} | {is_ / ps:6.3f} | {1000 * (is_ - ps):8.2f} || "
                  f"{get(side, 'setup'):16.3f}")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} (CPU, {os.cpu_count()} logical cores)"


def main() -> None:
    global SKIP
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--network", default="vgg16", help="torchvision model name (weights=None)")
    parser.add_argument("--size", type=int, default=224, help="image side H = W")
    parser.add_argument("--batch", type=int, default=1, help="images per batch B")
    parser.add_argument("--steps", type=int, default=10, help="optimization steps per timed run")
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per side")
    parser.add_argument("--warmup-steps", type=int, default=2, help="steps of the untimed warm-up run")
    parser.add_argument("--skip", type=int, default=2, help="first steps left out of the median step time")
    parser.add_argument("--prior-weight", type=float, default=1.0, help="weight of the edge-energy prior")
    parser.add_argument("--unit", type=int, default=700, help="output unit of the full-network case")
    parser.add_argument("--early-layer", default="features.7",
                        help="layer of the early-layer case (VGG16: the 4th conv is features.7)")
    parser.add_argument("--channel", type=int, default=0, help="channel of the early-layer case")
    parser.add_argument("--cases", default="full,early,tiny",
                        help="comma-separated subset of: full (output unit), early (early-layer channel), "
                             "tiny (a tiny network: isolates the framework's per-step cost)")
    parser.add_argument("--tiny-steps", type=int, default=100, help="steps per timed run of the tiny case")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch.set_num_threads, the same for both sides. 1 by default: on a shared machine a "
                             "multi-threaded step stalls at OpenMP barriers whenever another process holds a core, "
                             "which swamps the difference being measured; 0 = all cores")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.skip < 1:
        parser.error("--skip must be >= 1 (the step times run from the end of step --skip)")
    if min(args.steps, args.tiny_steps) <= args.skip:
        parser.error(f"--steps and --tiny-steps must be larger than --skip ({args.skip})")
    if args.reps < 1:
        parser.error("--reps must be >= 1")
    SKIP = args.skip

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        parser.error(f"--device must be cpu or cuda[:i], got {args.device!r}")
    torch.set_num_threads(args.threads if args.threads > 0 else (os.cpu_count() or torch.get_num_threads()))
    torch.manual_seed(args.seed)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # a deprecation inside Lightning, not ours
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in ("full", "early", "tiny")]
    if unknown:
        parser.error(f"unknown case {unknown[0]!r}; valid: full, early, tiny")
    network = torchvision.models.get_model(args.network, weights=None).eval().requires_grad_(False).to(device)
    if "early" in cases and args.early_layer not in dict(network.named_modules()):
        parser.error(f"--early-layer {args.early_layer!r} is not in {args.network}")

    print(f"date      {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"versions  torch {torch.__version__}, torchvision {torchvision.__version__}, "
          f"lightning {lightning.__version__}, python {platform.python_version()}")
    print(f"device    {device_name(device)}; torch threads {torch.get_num_threads()}")
    print(f"setup     {args.network} (weights=None), input {args.batch}x3x{args.size}x{args.size}, Adam lr 0.1, "
          f"edge-energy prior weight {args.prior_weight}, {args.steps} steps/run (tiny case: {args.tiny_steps}), "
          f"{args.reps} interleaved reps, warm-up run per side, step times leave out the first {args.skip} steps")

    shape = (args.batch, 3, args.size, args.size)
    rows = []
    for case in cases:
        if case == "full":
            rows.append(run_case(f"full: {args.network} {args.size}px output unit {args.unit}", network, "",
                                 args.unit, shape, args.steps, args, device))
        elif case == "early":
            rows.append(run_case(f"early: {args.network} {args.size}px {args.early_layer} ch {args.channel} sum",
                                 network, args.early_layer, args.channel, shape, args.steps, args, device))
        elif case == "tiny":
            tiny = TinyNet().eval().requires_grad_(False).to(device)
            rows.append(run_case("tiny: 1 conv + linear, 32px, output unit 700", tiny, "", 700,
                                 (args.batch, 3, 32, 32), args.tiny_steps, args, device, diagnose_log=True))

    print()
    print(f"Columns: 's/step' = whole run / steps (InputOptimization: module + Trainer + fit, setup included); "
          f"'step' = median duration of steps {args.skip + 1}..N in seconds (setup excluded); "
          f"ratio = inputopt / plain; delta = inputopt step - plain step")
    tables = [("wall", "median", f"WALL TIME, MEDIANS over {args.reps} interleaved reps")]
    if device.type == "cpu":
        tables.append(("cpu", "median", "CPU TIME OF THIS PROCESS, MEDIANS (not counting waits for cores held by "
                                        "other processes)"))
    tables.append(("wall", "min", "WALL TIME, MINIMUMS over the same reps (the runs least disturbed by other load)"))
    for clock, stat, title in tables:
        print()
        print(title)
        print_table(rows, clock, stat)


if __name__ == "__main__":
    main()

"""A step on torchvision's ``vit_b_16`` (random weights, 224 px), objective at block 6 of 12, against a plain loop.

Both sides optimize one 1×3×224×224 input of the same frozen network object with the same objective (feature
0 of ``encoder.layers.encoder_layer_5``, the 6th of the 12 blocks, summed over the patch tokens) and
Adam(lr=0.1); no prior, no transforms, so that only the truncated forward and the framework differ:

* **plain**: the loop a user writes by hand, reading the block through a forward hook; the whole network
  (the 6 later blocks, the final norm and the head) still runs every step::

      x = (torch.randn(1, 3, 224, 224) * 0.01).requires_grad_()
      for _ in range(N):
          net(x); loss = -hooked[:, 1:, 0].sum(); opt.zero_grad(); loss.backward(); opt.step()

* **inputopt**: ``InputOptimization(Problem("vit_b_16"-object, ChannelSum(layer, 0)))`` in a Lightning ``Trainer``:
  the capture stops the forward after the block (its layout, tokens, is declared, so channel 0 is feature
  0 over the patch tokens, the same score as the plain side's).

Per-step times are the median of steps ``--skip + 1 .. N`` (timestamps after the optimizer step, a
``Callback.on_train_batch_end`` on the Lightning side), over ``--reps`` interleaved repetitions (A B, B A, ...)
after one warm-up run of each. On the CPU, CPU time of the process (``time.process_time``) is given beside wall
time: on a shared machine it is the steadier measure of the work done.

    python benchmarks/bench_vit.py                      # 8 steps/run, 3 reps, 1 thread, CPU
    python benchmarks/bench_vit.py --device cuda --steps 30 --reps 5
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings

import torch
import torchvision
from lightning.pytorch import Callback, Trainer

from _machine import cpu_name, inputopt_revision
from inputopt import ChannelSum, InputOptimization
from inputopt.networks import freeze
from inputopt.problem import Problem

LAYER = "encoder.layers.encoder_layer_5"


def clock(device: str) -> tuple[float, float]:
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter(), time.process_time()


def plain(net, steps: int, device: str) -> list[tuple[float, float]]:
    hooked = {}
    handle = dict(net.named_modules())[LAYER].register_forward_hook(lambda m, i, o: hooked.__setitem__("a", o))
    x = (torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 0.01).to(device).requires_grad_()
    opt = torch.optim.Adam([x], lr=0.1)
    stamps = [clock(device)]
    try:
        for _ in range(steps):
            net(x)
            loss = -hooked["a"][:, 1:, 0].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            stamps.append(clock(device))
    finally:
        handle.remove()
    return stamps


class Stamps(Callback):
    def __init__(self, device: str) -> None:
        self.device, self.stamps = device, []

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        if not self.stamps:
            self.stamps.append(clock(self.device))

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.stamps.append(clock(self.device))


def inputopt(net, steps: int, device: str) -> list[tuple[float, float]]:
    module = InputOptimization(Problem(net, ChannelSum(LAYER, channel=0)), image_shape=(3, 224, 224))
    stamps = Stamps(device)
    Trainer(max_steps=steps, logger=False, enable_checkpointing=False, enable_progress_bar=False,
            enable_model_summary=False, accelerator="gpu" if device == "cuda" else "cpu", devices=1,
            callbacks=[stamps]).fit(module)
    return stamps.stamps


def per_step(stamps: list[tuple[float, float]], skip: int) -> tuple[float, float]:
    wall = [b[0] - a[0] for a, b in zip(stamps, stamps[1:])][skip:]
    cpu = [b[1] - a[1] for a, b in zip(stamps, stamps[1:])][skip:]
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--skip", type=int, default=2, help="first steps left out of the per-step median")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    net = freeze(torchvision.models.vit_b_16(weights=None)).to(args.device)
    print(f"vit_b_16 (random weights), 1x3x224x224, objective at {LAYER} (block 6 of 12), Adam lr 0.1; "
          f"{args.steps} steps/run, median of steps {args.skip + 1}..{args.steps}, {args.reps} reps, "
          f"{torch.get_num_threads()} thread(s), {args.device} "
          f"({torch.cuda.get_device_name() if args.device == 'cuda' else cpu_name()}){inputopt_revision()}")
    sides = {"plain loop (hook, full forward)": plain, "inputopt (forward stopped at the block)": inputopt}
    for fn in sides.values():  # warm-up
        fn(net, 2, args.device)
    results = {name: [] for name in sides}
    order = list(sides)
    for rep in range(args.reps):
        for name in order if rep % 2 == 0 else order[::-1]:
            results[name].append(per_step(sides[name](net, args.steps, args.device), args.skip))
    base_wall = statistics.median(w for w, _ in results[order[0]])
    base_cpu = statistics.median(c for _, c in results[order[0]])
    print(f"{'side':42s} {'wall s/step':>12s} {'ratio':>6s} {'cpu s/step':>11s} {'ratio':>6s}")
    for name in order:
        wall = statistics.median(w for w, _ in results[name])
        cpu = statistics.median(c for _, c in results[name])
        print(f"{name:42s} {wall:12.4f} {wall / base_wall:6.2f} {cpu:11.4f} {cpu / base_cpu:6.2f}")


if __name__ == "__main__":
    main()

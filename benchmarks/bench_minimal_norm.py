"""Minimal-norm attacks in inputopt against their torchattacks counterparts, side by side in one run: time,
success and median norm at equal settings.

Same network object, same images, one process. ``--data digits`` (default): the zoo's digits CNN and held-out
digits; ``--data photos``: EfficientNet-Lite0 and the 8 labelled real photos (1000 classes).

* ``cw``: ``inputopt.attacks.CW(net, c, steps=S, lr, abort_early="batch")`` against ``torchattacks.CW(net, c,
  kappa=0, steps=S, lr)``: one c (torchattacks has no binary search), Adam for S steps, the smallest adversarial
  image kept, and the early abort torchattacks always applies (the run stops when the batch's total loss rose
  at a tenth of the steps; ``--cw-abort none`` runs every step on our side). Goal: time ratio ≤ 0.9 with the
  median L2 no larger.

The median norm is over the images correctly classified and broken by that side; "broken" counts them. Each
side is timed over ``--reps`` interleaved calls (A B, B A, ...) after one warm-up call that gives the success
and norms; the table gives the medians of the wall times and their ratio inputopt / torchattacks.

    python benchmarks/bench_minimal_norm.py                                   # 100 digits, c 1, 50 steps
    python benchmarks/bench_minimal_norm.py --steps 100 --lr 0.01 --reps 5
    python benchmarks/bench_minimal_norm.py --data photos --images 8 --c 0.1 --steps 20 --reps 1

Needs torchattacks (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchattacks
from _machine import cpu_name, inputopt_revision

from inputopt.attacks import CW
from inputopt.data import Photos
from inputopt.networks import build_network
from inputopt.zoo import digits_cnn, load_digits_split


def load(data: str, images: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    """The network, images, labels and a description of ``--data``."""
    if data == "photos":
        photos = Photos()
        net = build_network("efficientnet_lite0").eval().requires_grad_(False)
        x, y = photos.images[:images], photos.labels[:images]
        return net, x, y, f"{len(x)} labelled photos, EfficientNet-Lite0"
    x, y = (t[:images] for t in load_digits_split("test"))
    return digits_cnn("a").eval(), x, y, f"{len(x)} held-out digits, digits CNN"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["digits", "photos"], default="digits")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cw-abort", choices=["batch", "image", "none"], default="batch",
                        help="CW's early abort on our side (torchattacks': batch)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    net, x, y, what = load(args.data, args.images)
    with torch.no_grad():
        correct = net(x).argmax(1) == y

    def measure(adversarial: torch.Tensor) -> tuple[int, float]:
        with torch.no_grad():
            broken = (net(adversarial).argmax(1) != y) & correct
        norms = (adversarial - x).flatten(1).norm(dim=1)
        return int(broken.sum()), norms[broken].median().item() if broken.any() else float("nan")

    cases = {
        f"CW-L2 (c {args.c}, {args.steps} steps, lr {args.lr}, abort {args.cw_abort})": (
            lambda: CW(net, c=args.c, steps=args.steps, lr=args.lr,
                       abort_early=None if args.cw_abort == "none" else args.cw_abort)(x, y),
            lambda: torchattacks.CW(net, c=args.c, kappa=0, steps=args.steps, lr=args.lr)(x, y)),
    }
    print(f"# {cpu_name()} / cpu, torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"inputopt{inputopt_revision()}")
    print(f"# {what} ({int(correct.sum())} correctly classified), {args.reps} reps, {args.threads} thread(s)")
    print("| attack | inputopt s | torchattacks s | ratio | broken inputopt | broken torchattacks | median L2 inputopt "
          "| median L2 torchattacks |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (ours, theirs) in cases.items():
        results = {side: measure(call()) for side, call in (("ours", ours), ("theirs", theirs))}  # warm-up
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for rep in range(args.reps):
            order = (("ours", ours), ("theirs", theirs)) if rep % 2 == 0 else (("theirs", theirs), ("ours", ours))
            for side, call in order:
                start = time.perf_counter()
                call()
                times[side].append(time.perf_counter() - start)
        a, b = statistics.median(times["ours"]), statistics.median(times["theirs"])
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f} | {results['ours'][0]} | {results['theirs'][0]} | "
              f"{results['ours'][1]:.4f} | {results['theirs'][1]:.4f} |", flush=True)


if __name__ == "__main__":
    main()

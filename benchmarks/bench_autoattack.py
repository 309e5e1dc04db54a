"""AutoAttack and APGD-CE in inputopt against torchattacks, side by side in one run: time and robust accuracy.

Same network object (the zoo's digits CNN), same held-out digits, same ε, one process:

* ``apgd-ce``: ``inputopt.attacks.APGD(net, eps, steps=100)`` against ``torchattacks.APGD(net, eps, steps=100)``
  (goal: time ratio ≤ 0.9, robust accuracy within 1 point).
* ``autoattack``: ``inputopt.attacks.AutoAttack(net, eps, steps=10)`` against ``torchattacks.AutoAttack(net,
  eps, n_classes=10)`` (goal: ≤ 0.8×, the same robust accuracy). torchattacks' standard ensemble runs its
  members with its own defaults, 10 APGD steps (the paper's are 100), 5000 Square queries, and FAB-T
  (which ours leaves out); ours runs with ``steps=10`` to match. ``--queries`` lowers Square's budget of
  both (torchattacks' members are then built as its ``AutoAttack`` builds them, with that budget).

Each side is timed over ``--reps`` interleaved calls (A B, B A, ...) after one warm-up call; the table gives
medians of the wall time and the ratio inputopt / torchattacks.

    python benchmarks/bench_autoattack.py                       # 100 digits, eps 0.05, 3 reps
    python benchmarks/bench_autoattack.py --images 450 --queries 5000 --device cuda
    python benchmarks/bench_autoattack.py --cases autoattack --images 50 --queries 500 --reps 1

Needs torchattacks (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchattacks
from _machine import cpu_name, inputopt_revision

from inputopt.attacks import APGD, AutoAttack
from inputopt.zoo import digits_cnn, load_digits_split


def torchattacks_autoattack(net, eps: float, queries: int):
    if queries == 5000:
        return torchattacks.AutoAttack(net, eps=eps, n_classes=10, seed=0)
    return torchattacks.MultiAttack([
        torchattacks.APGD(net, eps=eps, seed=0, loss="ce", n_restarts=1),
        torchattacks.APGDT(net, eps=eps, seed=0, n_classes=10, n_restarts=1),
        torchattacks.FAB(net, eps=eps, seed=0, multi_targeted=True, n_classes=10, n_restarts=1),
        torchattacks.Square(net, eps=eps, seed=0, n_queries=queries, n_restarts=1)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", nargs="+", default=["apgd-ce", "autoattack"], choices=["apgd-ce", "autoattack"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = digits_cnn("a").eval().to(device)
    x, y = (t[:args.images].to(device) for t in load_digits_split("test"))

    def accuracy(images):
        with torch.no_grad():
            return (net(images).argmax(1) == y).float().mean().item()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    cases = {
        "apgd-ce (100 steps)": (lambda: APGD(net, eps=args.eps, steps=100)(x, y),
                                lambda: torchattacks.APGD(net, eps=args.eps, steps=100, seed=0)(x, y)),
        f"autoattack ({args.queries} queries)": (
            lambda: AutoAttack(net, eps=args.eps, steps=10, queries=args.queries)(x, y),
            lambda: torchattacks_autoattack(net, args.eps, args.queries)(x, y)),
    }
    print(f"# {cpu_name()} / {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch "
          f"{torch.__version__}, torchattacks {torchattacks.__version__}, inputopt{inputopt_revision()}")
    print(f"# {args.images} held-out digits, eps {args.eps}, {args.reps} reps, {args.threads} thread(s), "
          f"{args.device}")
    print("| case | inputopt s | torchattacks s | ratio | robust acc. inputopt | robust acc. torchattacks |")
    print("|---|---|---|---|---|---|")
    for name, (ours, theirs) in cases.items():
        if name.split(" ")[0] not in args.cases:
            continue
        times = {"ours": [], "theirs": []}
        acc = {}
        for side, call in (("ours", ours), ("theirs", theirs)):  # warm-up, and the accuracy
            acc[side] = accuracy(call())
        for rep in range(args.reps):
            order = (("ours", ours), ("theirs", theirs)) if rep % 2 == 0 else (("theirs", theirs), ("ours", ours))
            for side, call in order:
                sync()
                start = time.perf_counter()
                call()
                sync()
                times[side].append(time.perf_counter() - start)
        a, b = statistics.median(times["ours"]), statistics.median(times["theirs"])
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f} | {acc['ours']:.1%} | {acc['theirs']:.1%} |", flush=True)


if __name__ == "__main__":
    main()

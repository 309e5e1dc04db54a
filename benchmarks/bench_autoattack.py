"""AutoAttack, APGD-CE and FAB in inputopt against torchattacks, side by side in one run: time and robust accuracy.

Same network object, same images, same ε, one process. ``--data digits`` (default): the zoo's digits CNN and
held-out digits; ``--data photos``: EfficientNet-Lite0 (pretrained elsewhere) and the 8 labelled real photos of
:class:`inputopt.data.Photos` (1000 classes).

* ``apgd-ce``: ``inputopt.attacks.APGD(net, eps, steps)`` against ``torchattacks.APGD(net, eps, steps)``
  (``--steps``, default 100; goal: time ratio ≤ 0.9, robust accuracy within 1 point).
* ``autoattack``: ``inputopt.attacks.AutoAttack(net, eps, steps)`` against torchattacks' standard ensemble
  (goal: ≤ 0.8×, the same robust accuracy). With the defaults (digits, 5000 queries, 10 steps) that is
  ``torchattacks.AutoAttack(net, eps, n_classes=10)`` itself: APGD-CE, APGD-T, FAB-T and Square, the same four
  members as ours, 10 APGD and FAB steps (the paper's are 100). Otherwise the same members built as its ``AutoAttack`` builds
  them, with ``--aa-steps`` steps and ``--queries`` Square queries on both sides, and 9 target classes for
  APGD-T and FAB-T (the standard AutoAttack's; torchattacks would aim at all 999 other classes of ImageNet).
* ``fab``: ``inputopt.attacks.FAB(net, eps=eps, steps)`` against ``torchattacks.FAB(net, eps=eps, steps)``
  (untargeted L∞, ``--aa-steps`` steps, one restart; goal: ≤ 0.9×, the same robust accuracy at ε).
* ``apgd-t``, ``fab-t``, ``square``: the ensemble's members alone, each on all the images, at the ensemble's
  settings (``--aa-steps``, 9 target classes, ``--queries``), against torchattacks' ``APGDT``, ``FAB``
  (``multi_targeted``) and ``Square``.

Each side is timed over ``--reps`` interleaved calls (A B, B A, ...) after one warm-up call (``--reps 0``: the
warm-up call alone is timed, for budgets too slow to run twice); the table gives medians of the wall time and
the ratio inputopt / torchattacks (``--clock cpu``: the process's CPU time instead of the wall time, which other
processes on a shared machine move far less; with one thread the two agree on a quiet machine). ``--floor`` adds
a table: each side's network passes, recorded on one more call and replayed alone (``benchmarks/_passes.py``),
the floor any implementation making them would reach. ``--channels-last`` converts the network (shared by both
sides) to ``torch.channels_last`` first; ``--frozen`` sets ``net.requires_grad_(False)`` first: the peers that call
``.backward()`` (torchattacks' CW and FAB, Foolbox) then compute no weight gradients, which they do for a network
whose parameters require grad, as the zoo's digits CNN's do (inputopt freezes the network during an attack either
way).

    python benchmarks/bench_autoattack.py                       # 100 digits, eps 0.05, 3 reps
    python benchmarks/bench_autoattack.py --images 450 --queries 5000 --device cuda
    python benchmarks/bench_autoattack.py --cases autoattack fab --images 50 --queries 500 --reps 1
    python benchmarks/bench_autoattack.py --cases apgd-t fab-t square --images 100 --queries 500 --clock cpu
    python benchmarks/bench_autoattack.py --data photos --eps 0.0005 --steps 3 --cases apgd-ce --reps 0

Needs torchattacks (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torchattacks
from _machine import cpu_name, inputopt_revision
from _passes import add_options, floor_row, prepare, print_floors

from inputopt.attacks import APGD, APGDT, FAB, AutoAttack, Square
from inputopt.data import Photos
from inputopt.networks import build_network
from inputopt.zoo import digits_cnn, load_digits_split


def torchattacks_autoattack(net, eps: float, queries: int, steps: int, classes: int):
    """torchattacks' standard ensemble: its ``AutoAttack`` itself at its defaults on 10 classes, else the same
    members. torchattacks' APGD-T and FAB-T use ``n_classes`` only for their number of targets, ``n_classes − 1``
    (999 on ImageNet); the standard AutoAttack, and ours, aim at the 9 most likely, so they get ``n_classes=10``."""
    if queries == 5000 and steps == 10 and classes == 10:
        return torchattacks.AutoAttack(net, eps=eps, n_classes=classes, seed=0)
    return torchattacks.MultiAttack([
        torchattacks.APGD(net, eps=eps, steps=steps, seed=0, loss="ce", n_restarts=1),
        torchattacks.APGDT(net, eps=eps, steps=steps, seed=0, n_classes=10, n_restarts=1),
        torchattacks.FAB(net, eps=eps, steps=steps, seed=0, multi_targeted=True, n_classes=10, n_restarts=1),
        torchattacks.Square(net, eps=eps, seed=0, n_queries=queries, n_restarts=1)])


def load(data: str, images: int, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    """The network, images, labels and a description of ``--data``."""
    if data == "photos":
        photos = Photos()
        net = build_network("efficientnet_lite0").eval().requires_grad_(False).to(device)
        x, y = photos.images[:images], photos.labels[:images]
        return net, x.to(device), y.to(device), f"{len(x)} labelled photos, EfficientNet-Lite0"
    x, y = (t[:images] for t in load_digits_split("test"))
    return digits_cnn("a").eval().to(device), x.to(device), y.to(device), f"{len(x)} held-out digits"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["digits", "photos"], default="digits")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100, help="APGD-CE's steps (the apgd-ce case)")
    parser.add_argument("--aa-steps", type=int, default=10, help="the APGD steps of both ensembles")
    parser.add_argument("--eps", type=float, default=0.05)
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="time the calls by the wall clock or by the process's CPU time")
    parser.add_argument("--cases", nargs="+", default=["apgd-ce", "autoattack"],
                        choices=["apgd-ce", "autoattack", "fab", "apgd-t", "fab-t", "square"])
    add_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    device = torch.device(args.device)
    net, x, y, what = load(args.data, args.images, device)
    net, what = prepare(net, args, what)
    floors = []
    classes = 1000 if args.data == "photos" else 10

    def accuracy(images):
        with torch.no_grad():
            return (net(images).argmax(1) == y).float().mean().item()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    cases = {
        f"apgd-ce ({args.steps} steps)": (lambda: APGD(net, eps=args.eps, steps=args.steps)(x, y),
                                          lambda: torchattacks.APGD(net, eps=args.eps, steps=args.steps, seed=0)(x, y)),
        f"autoattack ({args.aa_steps} steps, {args.queries} queries)": (
            lambda: AutoAttack(net, eps=args.eps, steps=args.aa_steps, queries=args.queries)(x, y),
            lambda: torchattacks_autoattack(net, args.eps, args.queries, args.aa_steps, classes)(x, y)),
        f"apgd-t ({args.aa_steps} steps)": (
            lambda: APGDT(net, eps=args.eps, steps=args.aa_steps)(x, y),
            lambda: torchattacks.APGDT(net, eps=args.eps, steps=args.aa_steps, n_classes=10, seed=0)(x, y)),
        f"fab-t ({args.aa_steps} steps)": (
            lambda: FAB(net, eps=args.eps, steps=args.aa_steps, target_classes=9)(x, y),
            lambda: torchattacks.FAB(net, eps=args.eps, steps=args.aa_steps, multi_targeted=True, n_classes=10,
                                     n_restarts=1, seed=0)(x, y)),
        f"square ({args.queries} queries)": (
            lambda: Square(net, eps=args.eps, queries=args.queries)(x, y),
            lambda: torchattacks.Square(net, eps=args.eps, n_queries=args.queries, n_restarts=1, seed=0)(x, y)),
        f"fab ({args.aa_steps} steps)": (
            lambda: FAB(net, eps=args.eps, steps=args.aa_steps)(x, y),
            lambda: torchattacks.FAB(net, eps=args.eps, steps=args.aa_steps, n_restarts=1, seed=0)(x, y)),
    }
    print(f"# {cpu_name()} / {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch "
          f"{torch.__version__}, torchattacks {torchattacks.__version__}, inputopt{inputopt_revision()}")
    print(f"# {what}, eps {args.eps}, {args.reps} reps, {args.threads} thread(s), "
          f"{args.device}, {args.clock} clock")
    print("| case | inputopt s | torchattacks s | ratio | robust acc. inputopt | robust acc. torchattacks |")
    print("|---|---|---|---|---|---|")
    for name, (ours, theirs) in cases.items():
        if name.split(" ")[0] not in args.cases:
            continue
        times = {"ours": [], "theirs": []}
        acc = {}
        for side, call in (("ours", ours), ("theirs", theirs)):  # warm-up, and the accuracy
            start = clock()
            acc[side] = accuracy(call())
            if not args.reps:
                times[side].append(clock() - start)
        for rep in range(args.reps):
            order = (("ours", ours), ("theirs", theirs)) if rep % 2 == 0 else (("theirs", theirs), ("ours", ours))
            for side, call in order:
                sync()
                start = clock()
                call()
                sync()
                times[side].append(clock() - start)
        a, b = statistics.median(times["ours"]), statistics.median(times["theirs"])
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f} | {acc['ours']:.1%} | {acc['theirs']:.1%} |", flush=True)
        if args.floor:
            floors.append(floor_row(name, net, x, ours, theirs, a, b, args.reps, clock))
    print_floors(floors, args)


if __name__ == "__main__":
    main()

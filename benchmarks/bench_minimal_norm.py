"""Minimal-norm attacks in inputopt against their torchattacks and Foolbox counterparts, side by side in one run:
time, success and median norm at equal settings.

Same network object, same images, one process. ``--data digits`` (default): the zoo's digits CNN and held-out
digits; ``--data photos``: EfficientNet-Lite0 and the 8 labelled real photos (1000 classes).

* ``cw``: ``inputopt.attacks.CW(net, c, steps=S, lr, abort_early="batch")`` against ``torchattacks.CW(net, c,
  kappa=0, steps=S, lr)``: one c (torchattacks has no binary search), Adam for S steps, the smallest adversarial
  image kept, and the early abort torchattacks always applies (the run stops when the batch's total loss rose
  at a tenth of the steps; ``--cw-abort none`` runs every step on our side).
* ``deepfool``: ``inputopt.attacks.DeepFool(net, steps=D, overshoot=0.02)`` (L2, 10 candidate classes) against
  ``torchattacks.DeepFool(net, steps=D, overshoot=0.02)`` (every class a candidate: on the digits' 10 classes the
  same); on the photos, against Foolbox's ``L2DeepFoolAttack(steps=D, candidates=10, overshoot=0.02)``
  (torchattacks' takes the full Jacobian: 1000 backward passes per image and step).
* ``ddn``: ``inputopt.attacks.DDN(net, steps=N)`` against Foolbox's ``DDNAttack(steps=N)`` (ε0 1, γ 0.05).
* ``fmn`` (only in ``--table``): ``inputopt.attacks.FMN(net, norm="L2", steps=S)`` against Foolbox's
  ``L2FMNAttack(steps=S)``.
* ``fab``: ``inputopt.attacks.FAB(net, norm="L2", steps=F)`` (untargeted, one run from the clean image,
  ``alpha_max`` 0.1, ``eta`` 1.05, ``beta`` 0.9: its defaults) against ``torchattacks.FAB(net, norm="L2",
  eps=inf, steps=F, n_restarts=1, alpha_max=0.1, eta=1.05, beta=0.9, seed=0, multi_targeted=False,
  n_classes=K)`` (untargeted: torchattacks' default mode). ``eps=inf``: torchattacks keeps an adversarial point
  only if its norm is at most ``eps`` (default 8/255), ours without ``eps`` keeps every one; with one run
  neither side draws a random start, so ``eps`` plays no other part. Both linearize every class at each step
  (one backward per class): on the photos' 1000 classes, 1000 backward passes per step. ``--fab-candidates K``
  runs ours with ``candidates=K`` (the label's boundaries with the ``K − 1`` other classes of highest clean
  logit: ``K − 1`` backward passes per step) and no peer: torchattacks' untargeted FAB has no such option (its
  ``get_diff_logits_grads_batch`` loops over every class of the logits; ``n_classes`` only sets FAB-T's number
  of targets).

Goal: time ratio ≤ 0.9 with the median L2 no larger. The median norm is over the images correctly classified and
broken by that side ("broken" counts them), and over those both sides break. Each side is timed over ``--reps``
interleaved calls (A B, B A, ...) after one warm-up call that gives the success and norms; the table gives the
medians of the wall times (``--clock cpu``: of the process's CPU time, which other processes on a shared machine
move far less) and their ratio inputopt / peer. ``--table`` prints instead one row per implementation
(FMN, DDN, CW, DeepFool and FAB, each followed by its peer): the tables of docs/adversarial.md. ``--reps 0``
times the one call that gives the success and norms (no warm-up: for the slow runs on the photos).
``--floor`` adds a table: each side's network passes, recorded on one more call and replayed alone
(``benchmarks/_passes.py``), the floor any implementation making them would reach. ``--channels-last`` converts
the network (shared by both sides) to ``torch.channels_last`` first; ``--frozen`` sets
``net.requires_grad_(False)`` first: the peers that call ``.backward()`` (torchattacks' CW and FAB, Foolbox) then
compute no weight gradients, which they do for a network whose parameters require grad, as the zoo's digits CNN's
do (inputopt freezes the network during an attack either way).

    python benchmarks/bench_minimal_norm.py                                   # 100 digits: CW, DeepFool, DDN, FAB
    python benchmarks/bench_minimal_norm.py --steps 100 --lr 0.01 --reps 5 --attacks cw
    python benchmarks/bench_minimal_norm.py --table --reps 1                  # the docs' table
    python benchmarks/bench_minimal_norm.py --data photos --images 8 --c 0.1 --steps 20 --ddn-steps 20 \\
        --deepfool-steps 10 --reps 1
    python benchmarks/bench_minimal_norm.py --table --data photos --images 8 --c 0.1 --steps 10 --ddn-steps 10 \\
        --deepfool-steps 5 --fab-steps 2 --reps 0                              # the docs' photos table
    python benchmarks/bench_minimal_norm.py --table --data photos --images 8 --attacks fab --fab-steps 10 \\
        --fab-candidates 10 --reps 0 --clock cpu                               # FAB on 10 of the 1000 classes

Needs torchattacks and Foolbox (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import foolbox
import torch
import torchattacks
from _machine import cpu_name, inputopt_revision
from _passes import add_options, floor_row, prepare, print_floors

from inputopt.attacks import CW, DDN, FAB, FMN, DeepFool
from inputopt.data import Photos
from inputopt.networks import build_network
from inputopt.zoo import digits_cnn, load_digits_split

Call = Callable[[], torch.Tensor]


def load(data: str, images: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor, str]:
    """The network, images, labels and a description of ``--data``."""
    if data == "photos":
        photos = Photos()
        net = build_network("efficientnet_lite0").eval().requires_grad_(False)
        x, y = photos.images[:images], photos.labels[:images]
        return net, x, y, f"{len(x)} labelled photos, EfficientNet-Lite0"
    x, y = (t[:images] for t in load_digits_split("test"))
    return digits_cnn("a").eval(), x, y, f"{len(x)} held-out digits, digits CNN"


def cases(args: argparse.Namespace, net: torch.nn.Module, x: torch.Tensor,
          y: torch.Tensor) -> dict[str, tuple[Call, str, Call | None]]:
    """``{attack: (inputopt's call, the peer's name, the peer's call or None)}`` for ``--attacks``."""
    model = foolbox.PyTorchModel(net, bounds=(0, 1))

    def fb(attack) -> Call:
        return lambda: attack(model, x, y, epsilons=None)[1]

    if args.data == "photos":
        deepfool_peer = ("Foolbox", fb(foolbox.attacks.L2DeepFoolAttack(steps=args.deepfool_steps, candidates=10,
                                                                          overshoot=0.02)))
    else:
        deepfool_peer = ("torchattacks", lambda: torchattacks.DeepFool(net, steps=args.deepfool_steps,
                                                                         overshoot=0.02)(x, y))
    with torch.no_grad():
        classes = net(x[:1]).shape[1]
    fab_peer: tuple[str, Call | None] = ("torchattacks", lambda: torchattacks.FAB(
        net, norm="L2", eps=float("inf"), steps=args.fab_steps, n_restarts=1, alpha_max=0.1, eta=1.05, beta=0.9,
        seed=0, multi_targeted=False, n_classes=classes)(x, y))
    if args.fab_candidates is not None:  # torchattacks' untargeted FAB linearizes every class: no peer
        fab_peer = ("no peer", None)
    every = {
        "fmn": (f"FMN-L2 ({args.steps} steps)", lambda: FMN(net, norm="L2", steps=args.steps)(x, y),
                "Foolbox", fb(foolbox.attacks.L2FMNAttack(steps=args.steps))),
        "ddn": (f"DDN ({args.ddn_steps} steps)", lambda: DDN(net, steps=args.ddn_steps)(x, y),
                "Foolbox", fb(foolbox.attacks.DDNAttack(steps=args.ddn_steps))),
        "cw": (f"CW-L2 (c {args.c}, {args.steps} steps, lr {args.lr}, abort {args.cw_abort})",
               lambda: CW(net, c=args.c, steps=args.steps, lr=args.lr,
                          abort_early=None if args.cw_abort == "none" else args.cw_abort)(x, y),
               "torchattacks", lambda: torchattacks.CW(net, c=args.c, kappa=0, steps=args.steps, lr=args.lr)(x, y)),
        "deepfool": (f"DeepFool-L2 ({args.deepfool_steps} steps, overshoot 0.02)",
                     lambda: DeepFool(net, steps=args.deepfool_steps, overshoot=0.02)(x, y), *deepfool_peer),
        "fab": (f"FAB-L2 ({args.fab_steps} steps, 1 run"
                + ("" if args.fab_candidates is None else f", candidates {args.fab_candidates}") + ")",
                lambda: FAB(net, norm="L2", steps=args.fab_steps, restarts=1, alpha_max=0.1, eta=1.05, beta=0.9,
                            candidates=args.fab_candidates)(x, y), *fab_peer),
    }
    return {every[name][0]: (every[name][1], *every[name][2:]) for name in args.attacks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["digits", "photos"], default="digits")
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--c", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=50, help="CW's and FMN's steps")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--ddn-steps", type=int, default=100)
    parser.add_argument("--deepfool-steps", type=int, default=50)
    parser.add_argument("--fab-steps", type=int, default=10)
    parser.add_argument("--fab-candidates", type=int, default=None,
                        help="our FAB's candidates (default: every class); then FAB has no peer")
    parser.add_argument("--attacks", type=lambda s: s.split(","), default=None,
                        help="comma-separated among fmn, ddn, cw, deepfool, fab (default: cw,deepfool,ddn,fab; with "
                             "--table all five)")
    parser.add_argument("--table", action="store_true", help="one row per implementation (the docs' table)")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                        help="time the calls by the wall clock or by the process's CPU time")
    add_options(parser)
    parser.add_argument("--cw-abort", choices=["batch", "image", "none"], default="batch",
                        help="CW's early abort on our side (torchattacks': batch)")
    args = parser.parse_args()
    if args.attacks is None:
        args.attacks = ["fmn", "ddn", "cw", "deepfool", "fab"] if args.table else ["cw", "deepfool", "ddn", "fab"]
    if args.reps < 0:
        parser.error(f"--reps must be >= 0, got {args.reps}")
    torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    net, x, y, what = load(args.data, args.images)
    net, what = prepare(net, args, what)
    floors = []
    with torch.no_grad():
        correct = net(x).argmax(1) == y

    def measure(adversarial: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            broken = (net(adversarial).argmax(1) != y) & correct
        return broken, (adversarial - x).flatten(1).norm(dim=1)

    def median(norms: torch.Tensor, rows: torch.Tensor) -> float:
        return norms[rows].median().item() if rows.any() else float("nan")

    print(f"# {cpu_name()} / cpu, torch {torch.__version__}, torchattacks {torchattacks.__version__}, "
          f"foolbox {foolbox.__version__}, inputopt{inputopt_revision()}")
    print(f"# {what} ({int(correct.sum())} correctly classified), {args.reps} reps, {args.threads} thread(s), "
          f"{args.clock} clock")
    if args.table:
        print("| attack | implementation | broken | median L2 | median L2 on the images both break | time s |")
        print("|---|---|---|---|---|---|")
    else:
        print("| attack | peer | inputopt s | peer s | ratio | broken inputopt | broken peer | median L2 inputopt "
              "| median L2 peer | median L2 on both inputopt | on both peer |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, (ours, peer, theirs) in cases(args, net, x, y).items():
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        results = {}
        if theirs is None:  # no peer at this setting (--fab-candidates): ours alone, timed as above
            seconds = []
            for rep in range(args.reps + 1):  # the first call gives the success and norms (timed with --reps 0)
                start = clock()
                adversarial = ours()
                if rep or not args.reps:
                    seconds.append(clock() - start)
                if not rep:
                    broken, norms = measure(adversarial)
            a = statistics.median(seconds)
            if args.table:
                print(f"| {name} | inputopt | {int(broken.sum())} | {median(norms, broken):.4f} | - | {a:.2f} |",
                      flush=True)
            else:
                print(f"| {name} | {peer} | {a:.2f} | - | - | {int(broken.sum())} | - | "
                      f"{median(norms, broken):.4f} | - | - | - |", flush=True)
            continue
        for side, call in (("ours", ours), ("theirs", theirs)):  # the warm-up (timed with --reps 0)
            start = clock()
            adversarial = call()
            if not args.reps:
                times[side].append(clock() - start)
            results[side] = measure(adversarial)
        for rep in range(args.reps):
            order = (("ours", ours), ("theirs", theirs)) if rep % 2 == 0 else (("theirs", theirs), ("ours", ours))
            for side, call in order:
                start = clock()
                call()
                times[side].append(clock() - start)
        a, b = statistics.median(times["ours"]), statistics.median(times["theirs"])
        (ours_broken, ours_norms), (theirs_broken, theirs_norms) = results["ours"], results["theirs"]
        both = ours_broken & theirs_broken
        if args.table:
            for who, seconds, (broken, norms) in (("inputopt", a, results["ours"]), (peer, b, results["theirs"])):
                print(f"| {name} | {who} | {int(broken.sum())} | {median(norms, broken):.4f} | "
                      f"{median(norms, both):.4f} | {seconds:.2f} |", flush=True)
        else:
            print(f"| {name} | {peer} | {a:.2f} | {b:.2f} | {a / b:.2f} | {int(ours_broken.sum())} | "
                  f"{int(theirs_broken.sum())} | {median(ours_norms, ours_broken):.4f} | "
                  f"{median(theirs_norms, theirs_broken):.4f} | {median(ours_norms, both):.4f} | "
                  f"{median(theirs_norms, both):.4f} |", flush=True)
        if args.floor:
            floors.append(floor_row(name, net, x, ours, theirs, a, b, args.reps, clock))
    print_floors(floors, args)


if __name__ == "__main__":
    main()

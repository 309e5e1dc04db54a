"""What FAB-T adds to torchattacks' standard AutoAttack ensemble: which images does it break that APGD-CE,
APGD-T and Square miss? Each member alone, with torchattacks' AutoAttack settings (one restart each, torchattacks'
default of 10 steps), on the same images; then the ensemble with and without FAB-T, and each member's time.

Two setups:

- ``--data digits``: the zoo's digits CNN and the first 100 held-out digits, ε = 0.05 (L∞), 10 classes;
- ``--data lite0``: EfficientNet-Lite0 and the 8 labelled real photos (:class:`inputopt.data.Photos`), ε = 0.00025
  (L∞, of 1; Lite0 is a standard network and breaks at larger ε, docs/adversarial.md), 1000 classes.

torchattacks derives the number of target classes of APGD-T and FAB-T from ``n_classes`` (``n_classes − 1``
of them): 999 targets on ImageNet, where the original AutoAttack uses 9. ``--targets`` (default 9) sets both, by
passing ``n_classes = targets + 1``, which is all torchattacks uses ``n_classes`` for; the targets are the classes
of highest logit after the true one. On digits 9 targets are all the classes, as before.

    python benchmarks/fab_contribution.py                                  # digits
    python benchmarks/fab_contribution.py --data lite0 --queries 1000      # the figures of docs/adversarial.md

Needs torchattacks (the ``dev`` extra).
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
import torchattacks
from _machine import cpu_name, inputopt_revision

DEFAULT_EPS = {"digits": 0.05, "lite0": 0.00025}


def load(data: str, images: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The network, the images and their labels of a setup."""
    if data == "digits":
        from inputopt.zoo import digits_cnn, load_digits_split

        x, y = load_digits_split("test")
        return digits_cnn("a").eval().requires_grad_(False), x[:images], y[:images]
    from inputopt.data import Photos
    from inputopt.networks import build_network

    photos = Photos()
    return build_network("efficientnet_lite0").eval().requires_grad_(False), photos.images, photos.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", choices=sorted(DEFAULT_EPS), default="digits", help="network and images")
    parser.add_argument("--images", type=int, default=100, help="held-out digits (lite0: always the 8 photos)")
    parser.add_argument("--eps", type=float, default=None, help="L∞ budget (default: 0.05 digits, 0.00025 lite0)")
    parser.add_argument("--steps", type=int, default=10, help="steps of APGD-CE, APGD-T and FAB-T (per target)")
    parser.add_argument("--targets", type=int, default=9, help="target classes of APGD-T and FAB-T")
    parser.add_argument("--queries", type=int, default=1000, help="Square's queries (AutoAttack: 5000)")
    parser.add_argument("--seed", type=int, default=0, help="the members' seed")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    eps = DEFAULT_EPS[args.data] if args.eps is None else args.eps

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"machine   {cpu_name()}, torch threads {torch.get_num_threads()}; torch {torch.__version__}, "
          f"torchattacks {torchattacks.__version__}, python {platform.python_version()}; inputopt{inputopt_revision()}")
    print(f"settings  {dict(vars(args), eps=eps)}", flush=True)

    net, x, y = load(args.data, args.images)
    with torch.no_grad():
        clean = net(x).argmax(1) == y
    print(f"images    {len(x)}, clean accuracy {clean.float().mean().item():.1%}", flush=True)
    n_classes = args.targets + 1
    members = {
        "APGD-CE": torchattacks.APGD(net, eps=eps, steps=args.steps, seed=args.seed, loss="ce", n_restarts=1),
        "APGD-T": torchattacks.APGDT(net, eps=eps, steps=args.steps, seed=args.seed, n_classes=n_classes,
                                     n_restarts=1),
        "FAB-T": torchattacks.FAB(net, eps=eps, steps=args.steps, seed=args.seed, multi_targeted=True,
                                  n_classes=n_classes, n_restarts=1),
        "Square": torchattacks.Square(net, eps=eps, seed=args.seed, n_queries=args.queries, n_restarts=1),
    }
    broken, seconds = {}, {}
    for name, attack in members.items():
        start = time.perf_counter()
        adversarial = attack(x, y)
        seconds[name] = time.perf_counter() - start
        with torch.no_grad():
            # an image counts as broken only within the budget (FAB returns its minimal point, checked here too)
            within = (adversarial - x).flatten(1).abs().amax(1) <= eps + 1e-6
            broken[name] = (net(adversarial).argmax(1) != y) & within | ~clean
        robust = 1 - broken[name].float().mean().item()
        print(f"  {name:8s} alone: robust accuracy {robust:.1%} ({len(x) - broken[name].sum().item()}/{len(x)}), "
              f"{seconds[name]:.1f} s", flush=True)

    others = broken["APGD-CE"] | broken["APGD-T"] | broken["Square"]
    rows = ["| | robust accuracy | time |", "|---|---|---|"]
    rows += [f"| {name} alone | {1 - b.float().mean().item():.1%} | {seconds[name]:.1f} s |" for name, b in broken.items()]
    rows.append(f"| ensemble without FAB-T | {1 - others.float().mean().item():.1%} | "
                f"{seconds['APGD-CE'] + seconds['APGD-T'] + seconds['Square']:.1f} s (each alone, summed) |")
    rows.append(f"| ensemble with FAB-T | {1 - (others | broken['FAB-T']).float().mean().item():.1%} | "
                f"{sum(seconds.values()):.1f} s (each alone, summed) |")
    print("\n".join(rows))
    print(f"broken by FAB-T only: {(broken['FAB-T'] & ~others).sum().item()} of {len(x)}")
    if len(x) <= 20:
        print("broken images (indices): " + "; ".join(f"{name} {b.nonzero().flatten().tolist()}"
                                                      for name, b in broken.items()))


if __name__ == "__main__":
    main()

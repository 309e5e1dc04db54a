"""The evaluation checks (:func:`inputopt.attacks.evaluation_checks`) on EfficientNet-Lite0 and the 8 labelled
real photos (:class:`inputopt.data.Photos`), APGD-CE as the evaluated attack, with budgets cut down to fit a CPU.

Lite0 is a standard (not adversarially trained) network: at ε = 0.001 (L∞, of 1) every photo breaks, at
ε = 0.00025 AutoAttack leaves 5 of 8 standing (docs/adversarial.md). The default ε = 0.00025 with the ε factors
0.25 to 4 puts the curve across that split. Every budget is a flag. The defaults are those of
``evaluation_checks`` (4× steps, 4 restarts, 1000 Square queries, 100 FMN steps, 200 sphere points) but for
APGD-CE's steps, 10 instead of the paper's 100: a forward and backward of the 8 photos at 224 px takes about
0.6 s on one CPU thread, and the checks run the attack about a dozen times. With so few steps a failed
``steps`` check says that the evaluated attack had not converged, which is what the check is for.

    python benchmarks/photos_checks.py                       # the figures of docs/adversarial.md
    python benchmarks/photos_checks.py --steps 100 --threads 0   # the paper's steps, on a bigger machine

Prints the machine, the settings, the checks table (Markdown) and the elapsed time.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from _machine import cpu_name, inputopt_revision

from inputopt.attacks import APGD, checks_table, evaluation_checks
from inputopt.data import Photos
from inputopt.networks import build_network


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--eps", type=float, default=0.00025, help="APGD-CE's L∞ budget (pixels in [0, 1])")
    parser.add_argument("--steps", type=int, default=10, help="APGD-CE's steps")
    parser.add_argument("--eps-factors", type=float, nargs="+", default=[0.25, 0.5, 1, 2, 4], help="the ε curve, × eps")
    parser.add_argument("--more-steps", type=int, default=4, help="the steps check runs this × steps")
    parser.add_argument("--restarts", type=int, default=4, help="random starts of the restarts check")
    parser.add_argument("--queries", type=int, default=1000, help="Square's queries in the black-box check")
    parser.add_argument("--minimal-steps", type=int, default=100, help="FMN's steps in the sphere check")
    parser.add_argument("--sphere-points", type=int, default=200, help="random points per photo in the sphere check")
    parser.add_argument("--seed", type=int, default=0, help="the attacks' seed (and torch's)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    print(f"machine   {cpu_name()}, torch threads {torch.get_num_threads()}; torch {torch.__version__}, "
          f"python {platform.python_version()}; inputopt{inputopt_revision()}")
    print(f"settings  {vars(args)}", flush=True)

    data = Photos()
    network = build_network("efficientnet_lite0").eval().requires_grad_(False)
    attack = APGD(network, eps=args.eps, steps=args.steps, loss="ce", seed=args.seed)
    start = time.perf_counter()
    results = evaluation_checks(attack, data.images, data.labels, eps_factors=args.eps_factors,
                                more_steps=args.more_steps, restarts=args.restarts, queries=args.queries,
                                minimal_steps=args.minimal_steps, sphere_points=args.sphere_points)
    elapsed = time.perf_counter() - start
    print(checks_table(results))
    print(f"elapsed   {elapsed:.0f} s ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()

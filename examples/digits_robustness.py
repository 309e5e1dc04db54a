"""Two figures of the adversarial docs page, on the shipped digits model and its 450 held-out digits.

1. Robust accuracy against ε for PGD-L∞ (20 steps, step 0.01, random start), with inputopt's dataset runner
   (``AttackEvaluation``, one run for every ε) and with a torchattacks loop over the same DataLoader
   (one ``torchattacks.PGD`` per ε): ``docs/images/digits_robust_accuracy.png``.
2. The random-sphere check for a minimal-norm attack (FMN-L2) against the seed's plain SGD
   (``GradientAscent``: lr 0.1, 15 steps, no budget): for the digits each attack fools (the first 200), the fraction of
   random points at k·‖δ‖₂ around the clean digit whose label differs from the clean label, for several k;
   and the distribution of ‖δ‖₂: ``docs/images/digits_sphere_check.png``.

    python examples/digits_robustness.py [--points 100] [--sphere-digits 200] [--out results/figures]   # --out docs/images: the docs' figures

Needs matplotlib and torchattacks (both in the ``dev`` extra). Prints every figure it plots.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torchattacks  # noqa: E402
from lightning.pytorch import Trainer  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from _quiet import quiet_lightning  # noqa: E402
from inputopt.attacks import FMN, PGD, GradientAscent  # noqa: E402
from inputopt.data import Digits  # noqa: E402
from inputopt.runners.attack import AttackEvaluation  # noqa: E402
from inputopt.zoo import digits_cnn  # noqa: E402

EPSILONS = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1, 0.125, 0.15]
STEPS, ALPHA = 20, 0.01


def robust_accuracy_curves(network, dataset) -> tuple[float, list[float], list[float]]:
    """Clean accuracy, then robust accuracy per ε with inputopt's runner and with a torchattacks loop."""
    runner = AttackEvaluation(PGD(network, eps=EPSILONS, alpha=ALPHA, steps=STEPS), dataset, batch_size=150,
                              sphere_points=0)
    Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
            accelerator="cpu", devices=1).test(runner, verbose=False)
    ours = [row["robust_accuracy"] for row in runner.results]
    theirs = []
    torch.manual_seed(0)
    for eps in EPSILONS:
        attack = torchattacks.PGD(network, eps=eps, alpha=ALPHA, steps=STEPS, random_start=True)
        robust = 0
        for images, labels in DataLoader(dataset, batch_size=150):
            adversarial = attack(images, labels)
            with torch.no_grad():
                robust += int((network(adversarial).argmax(1) == labels).sum())
        theirs.append(robust / len(dataset))
    return runner.results[0]["clean_accuracy"], ours, theirs


def plot_robust_accuracy(clean: float, ours: list[float], theirs: list[float], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot([0] + EPSILONS, [clean] + ours, "o-", label="inputopt PGD (AttackEvaluation)", lw=2)
    ax.plot([0] + EPSILONS, [clean] + theirs, "x--", label="torchattacks PGD (DataLoader loop)", lw=1.5)
    ax.set_xlabel("ε (L∞, pixels in [0, 1])")
    ax.set_ylabel("robust accuracy")
    ax.set_title(f"PGD-L∞, {STEPS} steps, step {ALPHA}, random start; 450 held-out digits", fontsize=9)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def sphere_curves(network, images, labels, factors, points) -> dict[str, dict]:
    """Per attack: the ‖δ‖₂ of the fooled digits and the mean label-change fraction at each factor."""
    attacks = {"FMN-L2 (minimal norm)": FMN(network, norm="L2", steps=100),
               "plain SGD (GradientAscent, lr 0.1, 15 steps)": GradientAscent(network)}
    out = {}
    for name, attack in attacks.items():
        result = attack.run(images, labels)[0]
        fooled = result.success & (result.clean_predictions == labels)
        norms = (result.images - result.clean).flatten(1).norm(dim=1)[fooled]
        fractions = [attack.sphere_check(result, factor, points)[fooled].mean().item() for factor in factors]
        out[name] = {"fooled": int(fooled.sum()), "total": int((result.clean_predictions == labels).sum()),
                     "norms": norms, "fractions": fractions}
    return out


def plot_sphere(curves: dict[str, dict], factors: list[float], points: int, path: Path) -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for (name, c), marker in zip(curves.items(), "os"):
        left.plot(factors, [100 * f for f in c["fractions"]], marker + "-", label=name)
        right.hist(c["norms"].numpy(), bins=30, alpha=0.6, label=f"{name}: median {c['norms'].median():.2f}")
    left.axvline(2.0, color="grey", lw=0.8, ls=":")
    left.set_xlabel("sphere radius / ‖δ‖₂")
    left.set_ylabel("random points that change the label (%)")
    left.set_title(f"random-sphere check, {points} points per fooled digit", fontsize=9)
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    right.set_xlabel("‖δ‖₂ of the fooled digits")
    right.set_ylabel("digits")
    right.set_title("perturbation size", fontsize=9)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100, help="random points per fooled digit")
    parser.add_argument("--sphere-digits", type=int, default=200, help="held-out digits for the sphere figure")
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0, 4.0])
    parser.add_argument("--out", type=Path, default=Path("results/figures"), help="the docs' own: docs/images")
    args = parser.parse_args()
    quiet_lightning()
    network = digits_cnn("a").eval()
    dataset = Digits("test")

    clean, ours, theirs = robust_accuracy_curves(network, dataset)
    print(f"clean accuracy {clean:.3f}")
    print(f"{'eps':>6} {'inputopt':>9} {'torchattacks':>12}")
    for eps, a, b in zip(EPSILONS, ours, theirs):
        print(f"{eps:6.3f} {a:9.3f} {b:12.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    plot_robust_accuracy(clean, ours, theirs, args.out / "digits_robust_accuracy.png")

    images, labels = (t[:args.sphere_digits] for t in dataset.tensors)
    curves = sphere_curves(network, images, labels, args.factors, args.points)
    for name, c in curves.items():
        print(f"{name}: fooled {c['fooled']}/{c['total']}, ‖δ‖₂ median {c['norms'].median():.3f}; label changed at "
              + ", ".join(f"{k:g}·‖δ‖: {100 * f:.2f} %" for k, f in zip(args.factors, c["fractions"])))
    plot_sphere(curves, args.factors, args.points, args.out / "digits_sphere_check.png")
    print(f"wrote {args.out / 'digits_robust_accuracy.png'} and {args.out / 'digits_sphere_check.png'}")


if __name__ == "__main__":
    main()

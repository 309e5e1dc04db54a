"""The reference adversarial procedure on the offline digits model, with figures for the docs.

For every held-out digit that the shipped model classifies correctly: SGD with lr 0.1 on the negative
cross-entropy for 15 steps, y = the model's own prediction, each digit frozen once its class has changed.
Then the random-sphere check on the fooled digits: the fraction of random points at k·‖x − x̃‖ around x
whose label differs from the label at x.

    python examples/digits_adversarial.py --points 1000 [--no-freeze]
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from lightning.pytorch import Trainer

from inputopt import InputOptimization, NegativeCrossEntropy, PredictionTable
from inputopt.functional import sphere_check
from inputopt.problem import Problem
from inputopt.zoo import digits_cnn, load_digits_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1000, help="random points per fooled digit")
    parser.add_argument("--factors", type=float, nargs="+", default=[1.0, 2.0], help="radii as multiples of ‖x − x̃‖")
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--no-freeze", dest="freeze", action="store_false", help="keep updating fooled digits")
    args = parser.parse_args()

    model = digits_cnn("a")
    images, labels = load_digits_split("test")
    correct = model(images).argmax(1) == labels
    images, labels = images[correct], labels[correct]

    module = InputOptimization(Problem(model, NegativeCrossEntropy(labels=labels.tolist())), init=images,
                               optimizer=partial(torch.optim.SGD, lr=args.lr), freeze_done=args.freeze)
    table = PredictionTable(print_table=False)
    Trainer(max_steps=args.steps, logger=False, enable_checkpointing=False, enable_model_summary=False,
            callbacks=[table]).fit(module)

    adversarial = module.images()
    with torch.no_grad():
        ce_before = torch.nn.functional.cross_entropy(model(images), labels, reduction="none")
        ce_after = torch.nn.functional.cross_entropy(model(adversarial), labels, reduction="none")
    fooled = module.predict_classes() != labels
    flipped_by_step = table.changed().tolist()  # the digits all start correctly classified
    distance = (adversarial - images).flatten(1).norm(dim=1)
    print(f"held-out digits correctly classified: {len(labels)}")
    print(f"class changed within {args.steps} steps: {int(fooled.sum())} ({fooled.float().mean():.1%})")
    print("fraction changed after each step: " + " ".join(f"{f:.2f}" for f in flipped_by_step))
    print(f"cross-entropy increased for {int((ce_after > ce_before).sum())} of {len(labels)} digits")
    print(f"‖x − x̃‖ of fooled digits: median {distance[fooled].median():.3f}, mean {distance[fooled].mean():.3f}")

    # The random-sphere check on the fooled digits only
    for factor in args.factors:
        fractions, _ = sphere_check(module.predict_classes, images[fooled], adversarial[fooled], factor,
                                    args.points, seed=0, chunk_size=1000)
        print(f"random points at {factor:g}·‖x − x̃‖: label changed at {fractions.mean():.2%} of points on average; "
              f"digits with no change at all: {(fractions == 0).float().mean():.1%}; max {fractions.max():.2f}")


if __name__ == "__main__":
    main()

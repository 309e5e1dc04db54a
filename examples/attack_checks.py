"""The Carlini et al. evaluation checks on the digits model, and on the same model behind a gradient-masking
input quantization: pass/fail tables and the figure of docs/adversarial.md.

    python examples/attack_checks.py            # writes results/figures/digits_checks.png, prints both tables
    python examples/attack_checks.py --out docs/images   # the docs' figure
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from inputopt.attacks import APGD, QuantizedInput, checks_table, evaluation_checks
from inputopt.zoo import digits_cnn, load_digits_split

torch.set_num_threads(1)
images, labels = (t[:100] for t in load_digits_split("test"))
models = {"digits model": digits_cnn("a").eval(),
          "behind an 8-level input quantization": QuantizedInput(digits_cnn("a").eval(), levels=8)}
figure, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharey=True)
for ax, (name, net) in zip(axes, models.items()):
    results = {r.name: r for r in evaluation_checks(APGD(net, eps=0.05, steps=50), images, labels, queries=1000)}
    print(f"## {name}\n\n{checks_table(list(results.values()))}\n")
    curve = results["eps curve"].values
    ax.plot(curve["eps"], curve["robust_accuracy"], "o-", label="APGD-CE (white-box)")
    box = results["black-box"].values
    ax.plot([0.05], [box["square"]], "s", color="C3", markersize=9, label="Square, 1000 queries (black-box)")
    ax.plot([1.0], [results["unbounded"].values["robust_accuracy"]], "^", color="C2", markersize=9,
            label="APGD-CE, unbounded (ε = 1)")
    failed = [r.name for r in results.values() if not r.passed]
    ax.set_title(f"{name}\nfailed: {', '.join(failed) or 'none'}", fontsize=9)
    ax.set_xscale("log")
    ax.set_xlabel("ε (L∞)")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("robust accuracy (100 held-out digits)")
axes[1].legend(fontsize=7, loc="lower left")
figure.tight_layout()
out = Path(sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else "results/figures") / "digits_checks.png"
out.parent.mkdir(parents=True, exist_ok=True)
figure.savefig(out, dpi=110)
print(f"wrote {out}")

"""The evaluation checks (:func:`inputopt.attacks.evaluation_checks`) on EfficientNet-Lite0 and the 8 labelled real
photos, with APGD-CE at ε = 0.001 and budgets cut down to fit a CPU.

    python benchmarks/photos_checks.py

Not yet run to completion: on two threads of a shared 2-core CPU it had not finished after 8 minutes.
"""
import time, torch
from inputopt.networks import build_network
from inputopt.data import Photos
from inputopt.attacks import APGD, checks_table, evaluation_checks
torch.set_num_threads(2)
data = Photos()
images = data.images; labels = torch.tensor([int(data[i][1]) for i in range(len(data))])
net = build_network("efficientnet_lite0").eval().requires_grad_(False)
t = time.time()
results = evaluation_checks(APGD(net, eps=0.001, steps=3), images, labels, eps_factors=(0.5, 1, 2), more_steps=2,
                            restarts=2, queries=50, minimal_steps=10, sphere_points=10)
print(checks_table(results)); print(f"{time.time() - t:.0f} s")

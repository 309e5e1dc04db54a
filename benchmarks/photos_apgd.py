"""APGD-CE in inputopt against torchattacks' ``APGD`` on EfficientNet-Lite0 and the 8 labelled real photos
(:class:`inputopt.data.Photos`): robust photos and time of each, same settings, one process.

    python benchmarks/photos_apgd.py 0.0005 3      # eps (of 1), steps: the figures of docs/adversarial.md

Needs torchattacks and the photos (the ``dev`` extra).
"""
import sys, time, torch, torchattacks
from inputopt.networks import build_network
from inputopt.data import Photos
from inputopt.attacks import APGD
torch.set_num_threads(2)
ds = Photos()
x = torch.stack([ds[i][0] for i in range(len(ds))]); y = torch.tensor([ds[i][1] for i in range(len(ds))])
net = build_network("efficientnet_lite0").eval()
for p in net.parameters(): p.requires_grad_(False)
eps, steps = float(sys.argv[1]), int(sys.argv[2])
def acc(a):
    with torch.no_grad(): return (net(a).argmax(1) == y).sum().item()
t = time.time(); ours = acc(APGD(net, eps=eps, steps=steps, loss="ce")(x, y)); t1 = time.time() - t
t = time.time(); theirs = acc(torchattacks.APGD(net, eps=eps, steps=steps, loss="ce", seed=0)(x, y)); t2 = time.time() - t
print(f"eps={eps} steps={steps}: ours {ours}/8 ({t1:.1f}s) torchattacks {theirs}/8 ({t2:.1f}s)")

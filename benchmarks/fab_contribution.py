"""FAB-T against the other members of torchattacks' AutoAttack, each alone, on 100 held-out digits at eps 0.05:
which images does FAB-T break that APGD-CE, APGD-T and Square miss?  python benchmarks/fab_contribution.py"""
import time, torch, torchattacks as ta
from inputopt.zoo import digits_cnn, load_digits_split
torch.set_num_threads(1)
net = digits_cnn("a").eval()
x, y = load_digits_split("test"); x, y = x[:100], y[:100]
def broken(a):
    with torch.no_grad(): return net(a).argmax(1) != y
eps = 0.05
res = {}
for name, atk in [("apgd-ce", ta.APGD(net, eps=eps, seed=0, loss="ce", n_restarts=1)),
                  ("apgd-t", ta.APGDT(net, eps=eps, seed=0, n_classes=10, n_restarts=1)),
                  ("fab-t", ta.FAB(net, eps=eps, seed=0, multi_targeted=True, n_classes=10, n_restarts=1)),
                  ("square", ta.Square(net, eps=eps, seed=0, n_queries=1000, n_restarts=1))]:
    t = time.time(); res[name] = broken(atk(x, y)); print(name, "alone: robust acc", 1 - res[name].float().mean().item(), f"{time.time()-t:.1f}s", flush=True)
others = res["apgd-ce"] | res["apgd-t"] | res["square"]
print("ensemble without fab: robust", 1 - others.float().mean().item(), "with fab:", 1 - (others | res["fab-t"]).float().mean().item(),
      "broken by fab only:", (res["fab-t"] & ~others).sum().item())

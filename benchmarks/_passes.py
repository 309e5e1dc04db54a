"""The network passes an attack makes, recorded and replayed alone: the floor of any implementation making them.

:func:`record_passes` hooks the network's top module and records every call: its batch, whether it built an
autograd graph, and how many backward passes later reached its output (a hook on the output tensor, which fires
once per ``backward``/``autograd.grad`` through it, ``retain_graph`` repeats included). :func:`replay` runs
exactly those passes on slices of real images and nothing else: each call a forward (under ``no_grad`` when no
backward followed it), then for each backward recorded on it one ``torch.autograd.grad`` of the output to the
input (the parameters frozen: no weight gradient). Its time is the floor of an attack that makes these passes.
The replay runs the network in the memory format it is given, while inputopt's attacks run a CNN channels-last on a
CPU (``inputopt.networks.channels_last_on_cpu``): for a floor of their passes in their format, give
``--channels-last``.

The benchmarks import it as ``from _passes import record_passes, replay``. ``python benchmarks/_passes.py``
checks the recording on a toy loop whose passes are known.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class Pass:
    """One call of the network: ``batch`` images, whether it built a ``graph`` (its output requires grad), and
    the number of ``backwards`` that reached its output."""

    batch: int
    graph: bool
    backwards: int = 0


@contextmanager
def record_passes(net: nn.Module) -> Iterator[list[Pass]]:
    """Record every call of ``net`` (a forward hook on the top module) while the block runs: a list of
    :class:`Pass`, filled in place."""
    calls: list[Pass] = []

    def hook(module: nn.Module, args: tuple, output: object) -> None:
        out = output if isinstance(output, Tensor) else next(t for t in output if isinstance(t, Tensor))
        call = Pass(int(args[0].shape[0]), bool(torch.is_grad_enabled() and out.requires_grad))
        calls.append(call)
        if call.graph:
            def count(grad: Tensor) -> None:
                call.backwards += 1
            out.register_hook(count)

    handle = net.register_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def summary(calls: list[Pass]) -> dict[str, int]:
    """Forward and backward passes, and images·passes of each, of ``calls``; ``graph_unused``: the forwards
    that built a graph no backward used."""
    return {"forwards": len(calls), "backwards": sum(c.backwards for c in calls),
            "forward_images": sum(c.batch for c in calls),
            "backward_images": sum(c.batch * c.backwards for c in calls),
            "graph_unused": sum(1 for c in calls if c.graph and not c.backwards)}


def replay(net: nn.Module, images: Tensor, calls: list[Pass], clock: Callable[[], float] = time.process_time) -> float:
    """Run exactly ``calls``' passes of ``net`` on real images (rows of ``images``, repeated when a call's batch
    is larger) and nothing else; returns the time by ``clock``. The inputs are sliced before the clock starts."""
    inputs = {}
    for batch in {c.batch for c in calls}:
        rows = torch.arange(batch, device=images.device) % len(images)
        inputs[batch] = images[rows].detach().clone().requires_grad_(True)
    flags = [p.requires_grad for p in net.parameters()]
    net.requires_grad_(False)
    try:
        start = clock()
        for call in calls:
            x = inputs[call.batch]
            if not call.backwards:
                with torch.no_grad():
                    net(x)
                continue
            out = net(x)
            seed = torch.ones_like(out)
            for k in range(call.backwards):
                torch.autograd.grad(out, x, seed, retain_graph=k < call.backwards - 1)
        if images.device.type == "cuda":
            torch.cuda.synchronize()
        return clock() - start
    finally:
        for p, flag in zip(net.parameters(), flags):
            p.requires_grad_(flag)


#: The header of :func:`floor_row`'s table.
FLOOR_HEADER = ("| case | passes inputopt (fwd / bwd) | images·passes inputopt (fwd / bwd) | "
                "passes peer (fwd / bwd) | images·passes peer (fwd / bwd) | unused graphs inputopt / peer | "
                "floor inputopt s | floor peer s | inputopt s | peer s | inputopt / its floor | peer / its floor | "
                "floor(inputopt) / peer |\n"
                "|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def floor_row(name: str, net: nn.Module, images: Tensor, ours: Callable[[], object], theirs: Callable[[], object],
              ours_s: float, theirs_s: float, reps: int, clock: Callable[[], float]) -> str:
    """One row of the floor table: ``ours`` and ``theirs`` called once each under :func:`record_passes`, their
    passes replayed ``max(reps, 1)`` times each, interleaved (A B, B A, ...), the medians set against the sides'
    measured times ``ours_s`` and ``theirs_s``."""
    recorded = {}
    for side, call in (("ours", ours), ("theirs", theirs)):
        with record_passes(net) as calls:
            call()
        recorded[side] = calls
    times: dict[str, list[float]] = {"ours": [], "theirs": []}
    for rep in range(max(reps, 1)):
        for side in ("ours", "theirs") if rep % 2 == 0 else ("theirs", "ours"):
            times[side].append(replay(net, images, recorded[side], clock))
    floor = {side: statistics.median(t) for side, t in times.items()}
    a, b = summary(recorded["ours"]), summary(recorded["theirs"])
    return (f"| {name} | {a['forwards']} / {a['backwards']} | {a['forward_images']} / {a['backward_images']} | "
            f"{b['forwards']} / {b['backwards']} | {b['forward_images']} / {b['backward_images']} | "
            f"{a['graph_unused']} / {b['graph_unused']} | {floor['ours']:.2f} | {floor['theirs']:.2f} | "
            f"{ours_s:.2f} | {theirs_s:.2f} | {ours_s / floor['ours']:.2f} | {theirs_s / floor['theirs']:.2f} | "
            f"{floor['ours'] / theirs_s:.2f} |")


def add_options(parser) -> None:
    """The benchmarks' ``--floor``, ``--channels-last`` and ``--frozen`` options."""
    parser.add_argument("--floor", action="store_true",
                        help="after the table, the floor: each side's network passes replayed alone, in the "
                             "network's format as given (benchmarks/_passes.py; with our attacks' channels-last on "
                             "a CPU, give --channels-last too)")
    parser.add_argument("--channels-last", action="store_true",
                        help="convert the network to channels_last (both sides share it)")
    parser.add_argument("--frozen", action="store_true",
                        help="net.requires_grad_(False) first: no weight gradients in the peers' .backward()")


def prepare(net: nn.Module, args, what: str) -> tuple[nn.Module, str]:
    """The network both sides share, after ``--channels-last`` and ``--frozen``, and the setup's description."""
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
        what += ", channels_last"
    if args.frozen:
        net.requires_grad_(False)
        what += ", frozen"
    return net, what


def print_floors(floors: list[str], args) -> None:
    """The floor table of the rows ``floor_row`` gave (nothing without ``--floor``)."""
    if floors:
        print(f"\n# the floor: each side's network passes (recorded on one more call) replayed alone, "
              f"{max(args.reps, 1)} reps interleaved, {args.clock} clock\n{FLOOR_HEADER}")
        print("\n".join(floors), flush=True)


def _self_check() -> None:
    """A toy loop with known passes: the recording and the replay must see exactly them."""
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    x = torch.rand(5, 1, 8, 8)
    with record_passes(net) as calls:
        for _ in range(3):  # three gradient steps on 5 images, through .backward() and autograd.grad
            xa = x.clone().requires_grad_(True)
            net(xa).sum().backward()
        xa = x[:2].clone().requires_grad_(True)
        torch.autograd.grad(net(xa).sum(), xa)
        with torch.no_grad():  # two evaluations
            net(x)
            net(x[:1])
        out = net(xa)  # three backwards from one forward (one per class, as FAB's linearization)
        for k in range(3):
            torch.autograd.grad(out[:, k].sum(), xa, retain_graph=k < 2)
        net(x)  # a graph (the parameters require grad) that no backward uses
    assert [(c.batch, c.graph, c.backwards) for c in calls] == [
        (5, True, 1), (5, True, 1), (5, True, 1), (2, True, 1), (5, False, 0), (1, False, 0), (2, True, 3),
        (5, True, 0)], calls
    assert summary(calls) == {"forwards": 8, "backwards": 7, "forward_images": 30, "backward_images": 23,
                              "graph_unused": 1}, summary(calls)
    with record_passes(net) as again:
        replay(net, x, calls)
    assert [(c.batch, c.backwards) for c in again] == [(c.batch, c.backwards) for c in calls], again
    assert all(p.requires_grad for p in net.parameters())  # the flags restored
    print("ok:", summary(calls))


if __name__ == "__main__":
    _self_check()

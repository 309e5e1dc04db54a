"""capture_activations and resolve_layer on the tiny network, against manual slicing of its Sequentials."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from inputopt.capture import OUTPUT, capture_activations, resolve_layer
from tests.conftest import make_tiny_net


def manual(net, x: torch.Tensor, name: str) -> torch.Tensor:
    """The output of layer ``name`` of a TinyConvNet, by running its Sequentials by hand."""
    if name == "":
        return net.classifier(net.features(x).flatten(1))
    part, index = name.split(".")
    if part == "features":
        return net.features[: int(index) + 1](x)
    return net.classifier[: int(index) + 1](net.features(x).flatten(1))


def all_hooks(net: nn.Module) -> list:
    return [(name, hook) for name, m in net.named_modules() for hook in m._forward_hooks.values()]


@pytest.fixture
def x() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))


class TestCaptureActivations:
    def test_smoke(self, tiny_net, x):
        acts = capture_activations(tiny_net, x, ["features.4"])
        assert list(acts) == ["features.4"]
        assert acts["features.4"].shape == (3, 8, 16, 16)

    @pytest.mark.parametrize("name", ["features.0", "features.2", "features.6", "classifier.1", "classifier.3", ""])
    def test_one_layer_matches_forward(self, tiny_net, x, name):
        acts = capture_activations(tiny_net, x, [name])
        torch.testing.assert_close(acts[name], manual(tiny_net, x, name), rtol=0, atol=0)

    def test_output_equals_network(self, tiny_net, x):
        torch.testing.assert_close(capture_activations(tiny_net, x, [OUTPUT])[OUTPUT], tiny_net(x),
                                   rtol=0, atol=0)

    def test_several_layers(self, tiny_net, x):
        names = ["classifier.1", "features.1", "", "features.5"]
        acts = capture_activations(tiny_net, x, names)
        assert set(acts) == set(names)
        for name in names:
            torch.testing.assert_close(acts[name], manual(tiny_net, x, name), rtol=0, atol=0)

    def test_matches_manual_hooks(self, tiny_net, x):
        expected = {}
        handles = [tiny_net.get_submodule(n).register_forward_hook(
            lambda m, i, o, n=n: expected.setdefault(n, o.detach().clone())) for n in ["features.3", "classifier.2"]]
        tiny_net(x)
        for h in handles:
            h.remove()
        acts = capture_activations(tiny_net, x, ["features.3", "classifier.2"])
        for name, value in expected.items():
            torch.testing.assert_close(acts[name], value, rtol=0, atol=0)

    def test_duplicate_names(self, tiny_net, x):
        acts = capture_activations(tiny_net, x, ["features.0", "features.0"])
        assert list(acts) == ["features.0"]

    def test_generator_of_names(self, tiny_net, x):
        acts = capture_activations(tiny_net, x, (n for n in ["features.0", "features.4"]))
        assert set(acts) == {"features.0", "features.4"}

    def test_gradient_flows(self, tiny_net, x):
        xa = x.clone().requires_grad_(True)
        capture_activations(tiny_net, xa, ["features.4"])["features.4"][:, 2].sum().backward()
        xb = x.clone().requires_grad_(True)
        manual(tiny_net, xb, "features.4")[:, 2].sum().backward()
        assert xa.grad.abs().sum() > 0
        torch.testing.assert_close(xa.grad, xb.grad, rtol=0, atol=0)

    @pytest.mark.parametrize("names, ran", [
        (["features.0"], {"features.0"}),
        (["features.2"], {"features.0", "features.1", "features.2"}),
        (["features.1", "features.4"], {f"features.{i}" for i in range(5)}),
        (["classifier.1"], {f"features.{i}" for i in range(7)} | {"classifier.0", "classifier.1"}),
    ])
    def test_stops_after_deepest_layer(self, tiny_net, x, names, ran):
        calls = []
        for name, module in tiny_net.named_modules():
            module.register_forward_pre_hook(lambda m, i, name=name: calls.append(name))
        capture_activations(tiny_net, x, names)
        leaves = {n for n, m in tiny_net.named_modules() if not list(m.children())}
        assert set(calls) & leaves == ran

    def test_later_modules_never_called(self, tiny_net, x):
        class Forbidden(nn.Module):
            def forward(self, x):
                raise AssertionError("a module after the deepest requested layer ran")

        tiny_net.features[5] = Forbidden()
        tiny_net.classifier = Forbidden()
        acts = capture_activations(tiny_net, x, ["features.4", "features.2"])
        torch.testing.assert_close(acts["features.4"], make_tiny_net().features[:5](x), rtol=0, atol=0)

    def test_hooks_removed(self, tiny_net, x):
        capture_activations(tiny_net, x, ["features.2", "classifier.3", ""])
        assert all_hooks(tiny_net) == []
        # and the network then runs normally, to the end
        torch.testing.assert_close(tiny_net(x), manual(tiny_net, x, ""), rtol=0, atol=0)

    def test_hooks_removed_after_error(self, tiny_net):
        with pytest.raises(RuntimeError):
            capture_activations(tiny_net, torch.randn(2, 5, 32, 32), ["features.4"])  # wrong channel count
        assert all_hooks(tiny_net) == []

    def test_user_hooks_kept(self, tiny_net, x):
        seen = []
        tiny_net.features[2].register_forward_hook(lambda m, i, o: seen.append(o.shape))
        capture_activations(tiny_net, x, ["features.2"])
        assert seen == [(3, 6, 32, 32)]
        assert len(tiny_net.features[2]._forward_hooks) == 1

    def test_shared_module_captured_first_time(self):
        class Twice(nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = nn.Linear(4, 4)

            def forward(self, x):
                return self.lin(torch.relu(self.lin(x)))

        net = Twice()
        x = torch.randn(2, 4)
        acts = capture_activations(net, x, ["lin"])
        torch.testing.assert_close(acts["lin"], net.lin(x), rtol=0, atol=0)

    def test_exception_unknown_layer(self, tiny_net, x):
        with pytest.raises(ValueError, match=r"unknown layer 'feature\.0'.*features\.0"):
            capture_activations(tiny_net, x, ["feature.0"])
        assert all_hooks(tiny_net) == []

    def test_exception_unknown_layer_after_valid_one(self, tiny_net, x):
        with pytest.raises(ValueError, match="classifer.3"):
            capture_activations(tiny_net, x, ["features.0", "classifer.3"])
        assert all_hooks(tiny_net) == []

    def test_exception_empty(self, tiny_net, x):
        with pytest.raises(ValueError, match="at least one layer"):
            capture_activations(tiny_net, x, [])

    def test_exception_layer_not_run(self, tiny_net, x):
        tiny_net.unused = nn.ReLU()
        with pytest.raises(RuntimeError, match="unused"):
            capture_activations(tiny_net, x, ["unused"])
        assert all_hooks(tiny_net) == []


class TestResolveLayer:
    def test_smoke(self, tiny_net):
        assert resolve_layer(tiny_net, "features.4") is tiny_net.features[4]
        assert resolve_layer(tiny_net, "classifier") is tiny_net.classifier
        assert resolve_layer(tiny_net, "") is tiny_net

    def test_exception_close_names(self, tiny_net):
        with pytest.raises(ValueError) as info:
            resolve_layer(tiny_net, "feature.0")
        message = str(info.value)
        assert "'feature.0'" in message and "TinyConvNet" in message
        assert "features.0" in message

    def test_exception_no_close_names(self, tiny_net):
        with pytest.raises(ValueError, match=r"valid names include: features, features\.0"):
            resolve_layer(tiny_net, "zzzzzzzzzzzz")

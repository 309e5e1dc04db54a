"""build_network, class_names and Normalize, with weights from local files only (no network here)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

from inputopt.networks import Normalize, WeightsUnavailableError, build_network, channels_last_on_cpu, class_names, freeze
from tests.conftest import TinyConvNet, make_tiny_net

SMALL = "squeezenet1_1"  # a small torchvision classifier (1.2M parameters)


def assert_frozen(net: torch.nn.Module) -> None:
    assert not net.training
    assert all(not m.training for m in net.modules())
    assert all(not p.requires_grad for p in net.parameters())


def assert_same_tensors(net: torch.nn.Module, state: dict) -> None:
    loaded = net.state_dict()
    assert loaded.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(loaded[key], value), key


def random_state(name: str, seed: int) -> dict:
    """A state_dict of the architecture with seeded random values, different from any default init."""
    torch.manual_seed(seed)
    net = torchvision.models.get_model(name, weights=None)
    with torch.no_grad():
        for value in net.state_dict().values():
            if value.is_floating_point():
                value.normal_()
    return {k: v.clone() for k, v in net.state_dict().items()}


@dataclass
class TorchHome:
    path: Path
    download_calls: list


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> TorchHome:
    """An empty torch cache, and downloads that fail at once as they would offline (no hanging)."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something called torch.hub.set_dir
    calls = []

    def offline(url, dst, *args, **kwargs):
        calls.append(url)
        raise URLError("offline (test)")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return TorchHome(home, calls)


def checkpoint_path(home: Path, name: str) -> Path:
    """Where torchvision reads the weights of ``name``'s default enum member: $TORCH_HOME/hub/checkpoints."""
    url = torchvision.models.get_model_weights(name).DEFAULT.url
    return home / "hub" / "checkpoints" / os.path.basename(url)


class TestBuildNetwork:
    def test_smoke_random_weights(self):
        net = build_network("alexnet")
        assert isinstance(net, torchvision.models.AlexNet)
        assert_frozen(net)
        assert net(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)

    def test_hub_dir_follows_torch_home(self, torch_home):
        assert Path(torch.hub.get_dir()) == torch_home.path / "hub"

    @pytest.mark.parametrize("weights", ["IMAGENET1K_V1", "DEFAULT", "SqueezeNet1_1_Weights.IMAGENET1K_V1"])
    def test_weights_from_torch_cache(self, torch_home, weights):
        state = random_state(SMALL, seed=3)
        path = checkpoint_path(torch_home.path, SMALL)
        path.parent.mkdir(parents=True)
        torch.save(state, path)
        net = build_network(SMALL, weights=weights)
        assert_same_tensors(net, state)
        assert_frozen(net)
        assert torch_home.download_calls == []

    def test_exception_weights_unavailable(self, torch_home):
        expected = checkpoint_path(torch_home.path, SMALL)
        with pytest.raises(WeightsUnavailableError) as info:
            build_network(SMALL, weights="IMAGENET1K_V1")
        message = str(info.value)
        assert str(expected) in message
        assert "state_dict" in message and "weights=None" in message
        assert torch_home.download_calls  # it did try to download
        assert not expected.exists()  # and left nothing half-written

    def test_exception_unknown_weights(self):
        with pytest.raises(ValueError,
                           match=r"unknown weights 'IMAGENET1K_V9' for squeezenet1_1; valid: .*IMAGENET1K_V1"):
            build_network(SMALL, weights="IMAGENET1K_V9")

    def test_exception_unknown_name(self):
        with pytest.raises(ValueError) as info:
            build_network("alexnett")
        message = str(info.value)
        assert "'alexnett'" in message
        assert "closest: alexnet" in message

    def test_state_dict_file(self, tmp_path):
        state = random_state(SMALL, seed=5)
        path = tmp_path / "weights.pth"
        torch.save(state, path)
        net = build_network(SMALL, state_dict=path)
        assert_same_tensors(net, state)
        assert_frozen(net)
        # a str path works too
        assert_same_tensors(build_network(SMALL, state_dict=str(path)), state)

    def test_state_dict_file_dotted_path(self, tmp_path):
        state = make_tiny_net(seed=7).state_dict()
        path = tmp_path / "tiny.pt"
        torch.save(state, path)
        net = build_network("tests.conftest.TinyConvNet", state_dict=path)
        assert_same_tensors(net, state)
        assert_frozen(net)

    @pytest.mark.parametrize("layout", ["wrapped", "prefixed", "wrapped_prefixed", "model", "lightning_model_attribute"])
    def test_state_dict_file_common_layouts(self, tmp_path, layout):
        """Lightning-style {"state_dict": ...}, {"model": ...}, DataParallel's "module." prefix, and a Lightning
        checkpoint of a module that holds the network as ``self.model`` ("model." prefix)."""
        state = make_tiny_net(seed=7).state_dict()
        if "prefixed" in layout:
            state = {f"module.{k}": v for k, v in state.items()}
        if layout == "lightning_model_attribute":
            state = {f"model.{k}": v for k, v in state.items()}
            layout = "wrapped"
        saved = {"state_dict": state, "epoch": 1} if "wrapped" in layout else {"model": state} if layout == "model" \
            else state
        torch.save(saved, tmp_path / "ckpt.pt")
        net = build_network("tests.conftest.TinyConvNet", state_dict=tmp_path / "ckpt.pt")
        assert_same_tensors(net, make_tiny_net(seed=7).state_dict())

    @pytest.mark.parametrize("content", [[1, 2], {}, torch.zeros(3)])
    def test_exception_state_dict_not_a_dict(self, tmp_path, content):
        torch.save(content, tmp_path / "bad.pt")
        with pytest.raises(ValueError, match=r"bad.pt' must hold a dict of tensors"):
            build_network("tests.conftest.TinyConvNet", state_dict=tmp_path / "bad.pt")

    def test_exception_state_dict_missing(self, tmp_path):
        missing = tmp_path / "nope.pth"
        with pytest.raises(FileNotFoundError, match="nope.pth"):
            build_network(SMALL, state_dict=missing)

    def test_exception_state_dict_wrong_architecture(self, tmp_path):
        path = tmp_path / "tiny.pt"
        torch.save(make_tiny_net().state_dict(), path)
        with pytest.raises(ValueError, match=r"state_dict file '.*tiny.pt' does not fit network 'squeezenet1_1'"):
            build_network(SMALL, state_dict=path)

    def test_dotted_path(self):
        net = build_network("tests.conftest.TinyConvNet")
        assert isinstance(net, TinyConvNet)
        assert_frozen(net)  # TinyConvNet() starts in training mode, with Dropout and BatchNorm
        x = torch.randn(2, 3, 32, 32)
        torch.testing.assert_close(net(x), net(x))  # eval: Dropout off

    def test_dotted_path_factory(self):
        net = build_network("tests.conftest.make_tiny_net")
        assert isinstance(net, TinyConvNet)
        assert_same_tensors(net, make_tiny_net().state_dict())
        assert_frozen(net)

    @pytest.mark.parametrize(("name", "message"), [("tests.conftest.NoSuchNet", "cannot import network"),
                                                   ("no_such_package.Net", "package 'no_such_package' is not allowed")])
    def test_exception_dotted_path(self, name, message):
        with pytest.raises(ValueError, match=f"network '{name}'.*{message}|{message} '{name}'"):
            build_network(name)

    def test_exception_dotted_path_with_weights(self):
        with pytest.raises(ValueError, match="only applies to torchvision models"):
            build_network("tests.conftest.TinyConvNet", weights="DEFAULT")

    def test_exception_weights_and_state_dict(self, tmp_path):
        with pytest.raises(ValueError, match="not both"):
            build_network(SMALL, weights="DEFAULT", state_dict=tmp_path / "x.pth")

    def test_freeze(self):
        net = TinyConvNet().train()
        assert freeze(net) is net
        assert_frozen(net)


class TestClassNames:
    def test_alexnet(self):
        names = class_names("alexnet")
        assert len(names) == 1000
        assert names[:2] == ["tench", "goldfish"]
        assert len(set(names)) > 990

    def test_num_classes(self):
        assert class_names("alexnet", num_classes=1000) == class_names("alexnet")
        assert class_names("alexnet", num_classes=10) is None

    def test_digits(self):
        assert class_names("digits") == [str(i) for i in range(10)]

    @pytest.mark.parametrize("name", ["tests.conftest.TinyConvNet", "no_such_net"])
    def test_unknown(self, name):
        assert class_names(name) is None


class TestNormalize:
    def test_matches_per_channel_formula(self):
        mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
        x = torch.rand(2, 3, 4, 5)
        y = Normalize(mean, std)(x)
        for c in range(3):
            torch.testing.assert_close(y[:, c], (x[:, c] - mean[c]) / std[c])

    def test_gradient(self):
        x = torch.rand(1, 2, 3, 3, requires_grad=True)
        Normalize([0.0, 1.0], [0.5, 4.0])(x).sum().backward()
        assert torch.equal(x.grad[0, 0], torch.full((3, 3), 2.0))
        assert torch.equal(x.grad[0, 1], torch.full((3, 3), 0.25))

    def test_buffers_follow_module(self):
        norm = Normalize([0.5], [0.5]).double()
        assert norm.mean.dtype == torch.float64
        assert {n for n, _ in norm.named_buffers()} == {"mean", "std"}

    @pytest.mark.parametrize("mean, std", [([0.5, 0.5], [0.5]), ([0.5], [0.0]), ([0.5], [-1.0])])
    def test_exception(self, mean, std):
        with pytest.raises(ValueError, match="one finite value per channel and std > 0"):
            Normalize(mean, std)


# -- channels_last_on_cpu ---------------------------------------------------------------------------------------

class _Flattening(nn.Module):
    """A CNN whose forward views its feature map: it needs contiguous strides."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
        self.fc = nn.Linear(4 * 8 * 8, 2)

    def forward(self, x):
        return self.fc(self.conv(x).view(len(x), -1))


def test_channels_last_on_cpu_converts_and_hands_back_the_same_tensors():
    from inputopt.zoo import digits_cnn

    net = digits_cnn("a").eval()
    x = torch.rand(5, 1, 32, 32)
    before = {name: (p.data_ptr(), p.stride()) for name, p in net.named_parameters()}
    expected = net(x)
    with channels_last_on_cpu(net, x[:1]) as converted:
        assert converted
        # every convolution weight in channels-last strides, the 1-input-channel one included
        assert all(p.stride() == p.data.to(memory_format=torch.channels_last).stride() and not p.is_contiguous()
                   for p in net.parameters() if p.ndim == 4 and p.shape[1] > 1)
        assert net.features[0].weight.stride()[1] == 1  # (16, 1, 3, 3): channels-last, not the given (9, 9, 3, 1)
        inside = net(x)
    # the user's own tensors back: the same storage, the same strides
    assert all((p.data_ptr(), p.stride()) == before[name] for name, p in net.named_parameters())
    assert torch.allclose(inside, expected, atol=1e-5)  # the same function


def test_channels_last_on_cpu_leaves_a_network_that_needs_contiguous_maps_and_one_that_is_no_cnn():

    net = _Flattening()
    x = torch.rand(2, 3, 8, 8)
    state = torch.random.get_rng_state()
    with channels_last_on_cpu(net, x[:1]) as converted:
        assert not converted and net.conv[1].weight.is_contiguous()
        net(x)  # runs as given
    assert torch.equal(torch.random.get_rng_state(), state)  # the probe draws nothing from the caller's stream
    linear = nn.Sequential(nn.Linear(3, 2))
    with channels_last_on_cpu(linear, torch.rand(1, 3)) as converted:
        assert not converted
    from inputopt.zoo.vit import digits_vit

    vit = digits_vit()  # one 4-D parameter, its patch embedding: not a CNN
    with channels_last_on_cpu(vit, torch.rand(1, 1, 32, 32)) as converted:
        assert not converted and all(p.is_contiguous() for p in vit.parameters())


def test_channels_last_on_cpu_hands_the_tensors_back_when_the_probe_fails_otherwise():
    class Refusing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3))

        def forward(self, x):
            raise ValueError("not this input")

    net = Refusing()
    pointer = net.conv[1].weight.data_ptr()
    with pytest.raises(ValueError, match="not this input"):
        with channels_last_on_cpu(net, torch.zeros(1, 3, 8, 8)):
            pass
    assert net.conv[1].weight.data_ptr() == pointer and net.conv[1].weight.is_contiguous()


def test_an_attack_runs_a_cnn_channels_last_and_hands_it_back():
    from inputopt.attacks import PGD
    from inputopt.zoo import digits_cnn

    net = digits_cnn("a").eval()
    formats = []
    net.features[4].register_forward_pre_hook(
        lambda module, args: formats.append(module.weight.is_contiguous(memory_format=torch.channels_last)))
    x = torch.rand(3, 1, 32, 32)
    PGD(net, eps=0.05, alpha=0.02, steps=2)(x, net(x).argmax(1))
    assert formats[0] is False and len(formats) > 3 and all(formats[1:])  # the labels forward as given; the attack channels-last
    formats.clear()
    net(x)
    assert formats == [False]  # handed back


def test_an_attack_runs_a_network_that_needs_contiguous_maps():
    from inputopt.attacks import PGD

    net = _Flattening().eval()
    x = torch.rand(4, 3, 8, 8)
    result = PGD(net, eps=0.1, alpha=0.05, steps=2).run(x, net(x).argmax(1))[0]
    assert result.images.shape == x.shape and net.conv[1].weight.is_contiguous()

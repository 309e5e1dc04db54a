"""`inputopt layers`: names, types and shapes of every layer, in execution order."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from inputopt.cli import main
from inputopt.layers import layer_table
from tests.conftest import make_tiny_net

ROOT = Path(__file__).resolve().parents[1]


def test_layer_table_matches_named_modules_and_real_shapes():
    net = make_tiny_net()
    rows = layer_table(net, (3, 32, 32))
    assert {name for name, *_ in rows} == {name for name, _ in net.named_modules()}
    table = {name: (kind, shape) for name, kind, shape, _ in rows}
    assert table["features.0"] == ("Conv2d", "(1, 6, 32, 32)")
    assert table["features.3"] == ("MaxPool2d", "(1, 6, 16, 16)")
    assert table["classifier.3"] == ("Linear", "(1, 10)")
    assert {layout for *_, layout in rows} == {"channels_first"}
    order = [name for name, *_ in rows]
    assert order.index("features.4") < order.index("classifier.1")  # execution order


def test_layers_command_prints_the_table(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["inputopt", "layers", "alexnet", "--image_shape", "3", "64", "64"])
    main()
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "type", "output", "shape", "layout"]
    assert any(line.split()[:2] == ["features.3", "Conv2d"] and "(1, 192, 7, 7)" in line for line in out)
    assert any(line.startswith('"" (output)') and "(1, 1000)" in line for line in out)


def test_layers_command_does_not_import_lightning():
    """`inputopt layers` starts fast: neither the package, nor the command line, nor the network imports Lightning."""
    code = ("import sys; from inputopt.cli import main; main(['layers', 'digits']); "
            "assert 'lightning' not in sys.modules, sorted(m for m in sys.modules if m.startswith('lightning'))[:5]")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert '"" (output)   DigitsCNN' in done.stdout


def test_layer_table_shows_declared_and_unknown_layouts():
    import torchvision
    from torch import nn

    vit = torchvision.models.VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=10)
    table = {name: layout for name, _, _, layout in layer_table(vit, (3, 32, 32))}
    assert table["conv_proj"] == "channels_first"
    assert table["encoder.layers.encoder_layer_1.mlp"] == "tokens(special=1, grid=4x4)"
    assert table["heads.head"] == "channels_first"
    assert table["encoder.layers.encoder_layer_0.self_attention"] == "-"  # a tuple
    swin = {name: layout for name, _, _, layout in layer_table(torchvision.models.swin_t(), (3, 64, 64))}
    assert (swin["features.0.0"], swin["features.1.0.mlp"], swin["avgpool"]) == (
        "channels_first", "channels_last", "channels_first")
    undeclared = nn.Sequential(nn.Flatten(2), nn.Linear(9, 4))  # (B, C, 9) -> (B, C, 4): unknown, not guessed
    assert [row[3] for row in layer_table(undeclared, (3, 3, 3))[:2]] == ["unknown", "unknown"]

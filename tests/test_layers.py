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
    assert {name for name, _, _ in rows} == {name for name, _ in net.named_modules()}
    table = {name: (kind, shape) for name, kind, shape in rows}
    assert table["features.0"] == ("Conv2d", "(1, 6, 32, 32)")
    assert table["features.3"] == ("MaxPool2d", "(1, 6, 16, 16)")
    assert table["classifier.3"] == ("Linear", "(1, 10)")
    order = [name for name, _, _ in rows]
    assert order.index("features.4") < order.index("classifier.1")  # execution order


def test_layers_command_prints_the_table(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["inputopt", "layers", "alexnet", "--image_shape", "3", "64", "64"])
    main()
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["name", "type", "output", "shape"]
    assert any(line.split()[:2] == ["features.3", "Conv2d"] and "(1, 192, 7, 7)" in line for line in out)
    assert any(line.startswith('"" (output)') and "(1, 1000)" in line for line in out)


def test_layers_command_does_not_import_lightning():
    """`inputopt layers` starts fast: neither the package, nor the command line, nor the network imports Lightning."""
    code = ("import sys; from inputopt.cli import main; main(['layers', 'digits']); "
            "assert 'lightning' not in sys.modules, sorted(m for m in sys.modules if m.startswith('lightning'))[:5]")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert '"" (output)   DigitsCNN' in done.stdout

"""The layering of the package: a core that knows no Lightning, and imports that only go down.

The layers, lowest first (a module may import from its own layer and the ones below, never above):

- **base**: configuration, pure tensor functions, capture, networks and the zoo, optimizers, result files;
- **terms**: objectives, priors, transforms, image parameterizations;
- **loss**: the loss path, the step engine and its run record, the problem of a run;
- **attacks and metrics**: attacks (on the loss path) and torchmetrics metrics with their functional twins;
- **lightning**: the LightningModule of a fit, the dataset runners and the callbacks;
- **commands**: the command lines and the package's lazy exports.

Everything up to "attacks and metrics" is the core: importing any of it loads neither Lightning nor jsonargparse.
The graph is read from the source (every ``import``, also inside functions), so a lazy import counts too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "inputopt"

LAYERS = [
    ("base", ["inputopt._config", "inputopt._resolve", "inputopt.functional", "inputopt.term", "inputopt.capture",
              "inputopt.layouts", "inputopt.networks",
              "inputopt.zoo", "inputopt.layers", "inputopt.optim", "inputopt.results", "inputopt.data"]),
    ("terms", ["inputopt.objectives", "inputopt.priors", "inputopt.transforms", "inputopt.params"]),
    ("loss", ["inputopt.engine", "inputopt.loss", "inputopt.record", "inputopt.problem"]),
    ("attacks and metrics", ["inputopt.attacks", "inputopt.metrics"]),
    ("lightning", ["inputopt._notices", "inputopt.module", "inputopt.runners", "inputopt.callbacks"]),
    ("commands", ["inputopt.commands", "inputopt.atlas", "inputopt.cli", "inputopt"]),
]
CORE_LAYERS = ("base", "terms", "loss", "attacks and metrics")


def module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the longest prefix that names ``module`` or a package above it."""
    best = None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[1]):
                best = (index, len(prefix))
    if best is None:
        raise AssertionError(f"module {module} is in no layer: add it to LAYERS in {__file__}")
    return best[0]


def imports_of(module: str, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports (anywhere in its source, relative imports resolved)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    is_package = not path.exists()
    if is_package:
        path = PACKAGE.parent / module.replace(".", "/") / "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            while target and target not in known:  # `from a.b import c`: the module a.b (or a.b.c)
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    names = module_names()
    known = set(names)
    return {name: imports_of(name, known) for name in names}


def folder(module: str) -> str:
    """The folder a module's file lives in (a package's ``__init__`` lives in its own folder)."""
    path = PACKAGE.parent / module.replace(".", "/")
    return module if path.is_dir() else module.rpartition(".")[0]


def test_every_module_is_in_a_layer():
    for name in module_names():
        layer_of(name)


def test_no_import_goes_up_a_layer():
    upward = [f"{name} ({LAYERS[layer_of(name)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
              for name, targets in graph().items() for target in sorted(targets)
              if name != "inputopt" and layer_of(target) > layer_of(name)]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_cycle_between_folders():
    edges = graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len({folder(m) for m in component}) > 1:
                cycles.append(sorted(component))

    for node in edges:
        if node not in index:
            visit(node)
    assert not cycles, f"import cycles across folders: {cycles}"


def test_the_graph_sees_imports_inside_functions():
    """The checks above would be empty if the graph missed lazy imports: module.py imports the progress
    callbacks inside a method, and the layering test must see that edge."""
    edges = graph()
    assert "inputopt.callbacks.progress" in edges["inputopt.module"]
    assert "inputopt.runners.base" in edges["inputopt.runners.attack"]
    assert layer_of("inputopt.commands.fit") > layer_of("inputopt.module") > layer_of("inputopt.loss")


CORE = [name for name in module_names() if LAYERS[layer_of(name)][0] in CORE_LAYERS
        and not name.startswith("inputopt.zoo.train_")]  # a training script, run as a program


def test_core_imports_no_lightning():
    """The core modules, imported one after the other in a fresh interpreter, load neither Lightning nor
    jsonargparse; the first module that would is named (one interpreter: a subprocess per module costs a
    torch import each)."""
    code = ("import importlib, sys\n"
            "def bad():\n"
            "    return sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning', "
            "'jsonargparse'))\n"
            f"for name in {CORE!r}:\n"
            "    importlib.import_module(name)\n"
            "    if bad():\n"
            "        print(name, 'loaded', ', '.join(bad()[:5]))\n"
            "        break\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "", result.stdout
    assert len(CORE) > 40 and "inputopt.attacks.base" in CORE and "inputopt.metrics.quality" in CORE


def test_the_lightning_check_can_fail():
    """The same check on a Lightning-side module names what it loads."""
    code = "import sys, inputopt.module; print(any(m.split('.')[0] == 'lightning' for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                            cwd=PACKAGE.parent)
    assert result.stdout.strip() == "True", result.stderr

"""The ``inputopt`` command: ``inputopt fit --config configs/<name>.yaml`` (LightningCLI, in
:mod:`inputopt.fit_cli`), ``inputopt layers NETWORK`` and the other :data:`SUBCOMMANDS`.

This module imports no Lightning: each subcommand's module is imported when it is called, so that
``inputopt layers`` starts in the time it takes to build the network."""

from __future__ import annotations

import sys
import warnings

__all__ = ["layers_main", "main"]


def layers_main(argv: list[str]) -> None:
    """``inputopt layers NETWORK``: print the dotted names, types and output shapes of its layers."""
    import argparse

    from inputopt.layers import layer_table
    from inputopt.networks import build_network

    parser = argparse.ArgumentParser(prog="inputopt layers", description=layers_main.__doc__)
    parser.add_argument("network", help="zoo name, torchvision name or dotted import path")
    parser.add_argument("--image_shape", type=int, nargs=3, default=None, metavar=("C", "H", "W"),
                        help="input size (default: the network's own, e.g. 1 32 32 for the zoo, 3 224 224 for vgg16)")
    parser.add_argument("--state_dict", default=None, help="local state_dict file")
    args = parser.parse_args(argv)
    from inputopt.networks import default_image_shape

    shape = args.image_shape or default_image_shape(args.network) or (3, 224, 224)
    rows = [(name or "\"\" (output)", kind, out) for name, kind, out in
            layer_table(build_network(args.network, state_dict=args.state_dict), shape)]
    widths = [max(len(row[i]) for row in rows + [("name", "type", "output shape")]) for i in range(3)]
    for row in [("name", "type", "output shape"), *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())


#: The subcommands: name -> ("module:function", one-line help). Imported only when called, so that
#: ``inputopt layers`` does not pay for the others (Lightning included), and no module imports this one.
SUBCOMMANDS = {
    "fit": ("inputopt.fit_cli:fit_main", "optimize the input of a network: feature visualization or an attack on a "
                                         "few images"),
    "attack": ("inputopt.runner:attack_main", "evaluate an attack over a data set (robust accuracy, norms, ...)"),
    "examples": ("inputopt.dataset_examples:examples_main", "find the top-k natural images of every unit of a layer"),
    "sweep": ("inputopt.sweep:sweep_main", "visualize many units, chunk by chunk, resumable, on any devices"),
    "atlas": ("inputopt.atlas.run:atlas_main", "a static web site of every unit of some layers: visualizations, "
                                               "dataset examples, metrics"),
    "layers": ("inputopt.cli:layers_main", "list a network's layers: dotted names, types, output shapes"),
}

USAGE = """usage: inputopt <command> [options]

commands:
{commands}
Run `inputopt <command> --help` for the options of a command.
"""


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``inputopt`` command: ``inputopt <command> ...``, one of :data:`SUBCOMMANDS`."""
    import importlib

    argv = sys.argv[1:] if argv is None else list(argv)
    if "" not in sys.path:  # as `python -m` does: the user's own objectives import from the current folder
        sys.path.insert(0, "")
    if not argv or argv[0] in ("-h", "--help"):
        rows = {name: help_ for name, (_, help_) in SUBCOMMANDS.items()}
        width = max(map(len, rows)) + 2
        commands = "".join(f"  {name:<{width}}{help_}\n" for name, help_ in rows.items())
        print(USAGE.format(commands=commands), end="")
        return
    if argv[0] not in SUBCOMMANDS:
        print(f"inputopt: unknown command {argv[0]!r}; the commands are {', '.join(SUBCOMMANDS)} "
              f"(`inputopt --help`)", file=sys.stderr)
        raise SystemExit(2)
    with warnings.catch_warnings():
        # the command line, passed on as `args`: not the mix of two command lines that Lightning warns about
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        module, function = SUBCOMMANDS[argv[0]][0].split(":")
        getattr(importlib.import_module(module), function)(argv[1:])


if __name__ == "__main__":
    main()

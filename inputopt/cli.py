"""The ``inputopt`` command: ``inputopt fit --config configs/<name>.yaml`` (LightningCLI, in
:mod:`inputopt.commands.fit`), ``inputopt layers NETWORK`` and the other :data:`SUBCOMMANDS`.

This module imports no Lightning: each subcommand's module is imported when it is called, so that
``inputopt layers`` starts in the time it takes to build the network."""

from __future__ import annotations

import sys
import warnings

__all__ = ["SUBCOMMANDS", "main"]


#: The subcommands: name -> ("module:function", one-line help). Imported only when called, so that
#: ``inputopt layers`` does not pay for the others (Lightning included), and no module imports this one.
SUBCOMMANDS = {
    "fit": ("inputopt.commands.fit:fit_main", "optimize the input of a network: feature visualization or an attack on a "
                                         "few images"),
    "attack": ("inputopt.commands.runners:attack_main", "evaluate an attack over a data set (robust accuracy, norms, ...)"),
    "examples": ("inputopt.commands.runners:examples_main", "find the top-k natural images of every unit of a layer"),
    "sweep": ("inputopt.commands.sweep:sweep_main", "visualize many units, chunk by chunk, resumable, on any devices"),
    "universal": ("inputopt.commands.universal:universal_main", "one input for a whole data set: a universal "
                                                                 "perturbation or an adversarial patch, on any devices"),
    "layers": ("inputopt.commands.layers:layers_main", "list a network's layers: dotted names, types, output shapes"),
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

"""``inputopt layers NETWORK``: a network's layers, without Lightning."""

from __future__ import annotations

__all__ = ["layers_main"]


def layers_main(argv: list[str]) -> None:
    """``inputopt layers NETWORK``: print the dotted names, types, output shapes and layouts of its layers."""
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
    if any(size < 1 for size in shape):
        parser.error(f"--image_shape must be three positive ints C H W, got {' '.join(map(str, shape))}")
    header = ("name", "type", "output shape", "layout")
    rows = [(name or "\"\" (output)", kind, out, layout) for name, kind, out, layout in
            layer_table(build_network(args.network, state_dict=args.state_dict), shape)]
    widths = [max(len(row[i]) for row in rows + [header]) for i in range(4)]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())

"""Parameters and forward FLOPs per patch of the generators.

Usage::

    python -m models.summary                                   # dense_unet, unet3d, linear at paper settings
    python -m models.summary --generator dense_unet features=8 norm=batch
    python -m models.summary --generator unet3d "features=(32,64,128,256,512)" --patch-size 64

FLOPs are counted, not estimated: ``torch.utils.flop_counter.FlopCounterMode`` records every
convolution and matmul of one forward pass on a ``(1, in_channels, P, P, P)`` batch, with
FLOPs = 2 x multiply-adds. The network is built on the meta device, so nothing is computed and
even the 90 M-parameter U-Net is summarised instantly.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from models import GENERATORS, acquired_grid

PAPER = ("dense_unet", "unet3d", "linear")  # every constructor default is the paper's setting
DEFAULT_ROWS = (*PAPER, "slice_resnet")  # + the acquired-slice generator at its defaults (experiments/slice_resnet.yaml)
INTERVAL = 5  # acquired-slice generators are measured at the paper's interval


def measure(name: str, kwargs: dict[str, Any] | None = None, patch_size: int = 32) -> tuple[int, float]:
    """Parameters and forward FLOPs of one generator.

    Args:
        name: registered generator name.
        kwargs: constructor arguments (defaults: the paper's settings).
        patch_size: edge of the cubic input patch.

    Returns:
        ``(parameters, flops)`` for a ``(1, in_channels, patch_size, patch_size, patch_size)`` forward; for an
        acquired-slice generator, the FLOPs of emitting a ``patch_size``³ block at interval 5 (its acquired
        slices in, the 4 missing slices of each gap out), scaled from the whole gaps that the block spans.
    """
    kwargs = dict(kwargs or {})
    with torch.device("meta"):
        net = GENERATORS.build(name, **kwargs).eval()
        acquired = acquired_grid(net)
        kept = patch_size // INTERVAL + 1
        x = torch.zeros(1, kwargs.get("in_channels", 1), patch_size, patch_size, kept if acquired else patch_size)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            if acquired:
                t = torch.arange(1, INTERVAL)[None].float() / INTERVAL
                net(x, torch.full((1,), float(INTERVAL)), t)
            else:
                net(x)
    flops = counter.get_total_flops() * (patch_size / ((kept - 1) * INTERVAL) if acquired else 1)
    return sum(p.numel() for p in net.parameters()), flops


def table(rows: Sequence[tuple[str, dict[str, Any]]], patch_size: int = 32) -> str:
    """A plain-text table: generator, arguments, parameters and GFLOP per patch forward."""
    head = ("generator", "arguments", "parameters", f"GFLOP per {patch_size}^3 patch")
    body = []
    for name, kwargs in rows:
        params, flops = measure(name, kwargs, patch_size)
        args = " ".join(f"{k}={v}" for k, v in kwargs.items()) or ("(paper)" if name in PAPER else "(defaults)")
        body.append((name, args, f"{params:,}", f"{flops / 1e9:.2f}"))
    widths = [max(len(r[i]) for r in (head, *body)) for i in range(len(head))]
    fmt = "  ".join(f"{{:{'<' if i < 2 else '>'}{w}}}" for i, w in enumerate(widths))
    lines = [fmt.format(*head), "  ".join("-" * w for w in widths), *(fmt.format(*r) for r in body)]
    return "\n".join(lines)


def _value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word such as norm=batch


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m models.summary", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--generator", choices=GENERATORS.names(), help="one generator (default: the paper's three and slice_resnet)"
    )
    parser.add_argument("--patch-size", type=int, default=32, help="edge of the cubic patch (default 32)")
    parser.add_argument("kwargs", nargs="*", metavar="key=value", help="constructor arguments of --generator")
    args = parser.parse_args(argv)
    if args.kwargs and not args.generator:
        parser.error("key=value arguments need --generator NAME")
    bad = [a for a in args.kwargs if "=" not in a]
    if bad:
        parser.error(f"expected key=value, got {' '.join(bad)}")
    kwargs = {k: _value(v) for k, v in (a.split("=", 1) for a in args.kwargs)}
    rows = [(args.generator, kwargs)] if args.generator else [(name, {}) for name in DEFAULT_ROWS]
    try:
        print(table(rows, args.patch_size))
    except (KeyError, ValueError, TypeError) as err:
        parser.error(str(err))


if __name__ == "__main__":
    main()

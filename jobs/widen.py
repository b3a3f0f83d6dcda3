"""Widen a trained checkpoint into a bigger CRNN that reads exactly as it did, to train on from there.

    python -m jobs.widen crnn/weights/crnn_default.pt --channels 48,96,192,192,384,384,384 \
        --lstm-hidden 192 --out runs/wide/init.pt --version 2026.11.25-wide-init
    python -m jobs.train --init runs/wide/init.pt ...

New units start with zero outgoing weights (`crnn/widen.py`), so the widened file's readings equal the
old file's until it is trained; the job checks that on a random batch before writing.
"""

from __future__ import annotations

import argparse
import sys

import torch

from crnn.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from crnn.widen import widen


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(c) for c in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, found {text!r}") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="widen", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="a checkpoint written by jobs.train (or the shipped default)")
    p.add_argument("--channels", type=_widths, required=True, help="7 comma-separated conv widths, e.g. 48,96,192,192,384,384,384")
    p.add_argument("--lstm-hidden", type=int, required=True, help="LSTM width per direction")
    p.add_argument("--out", required=True, help="where to write the widened checkpoint")
    p.add_argument("--version", required=True, help="version recorded in the widened checkpoint")
    args = p.parse_args(argv)
    try:
        model, charset, meta = load_checkpoint(args.checkpoint)
        wide = widen(model, args.channels, args.lstm_hidden).eval()
    except (CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    x = torch.randn(8, 1, model.config.height, 160)
    with torch.no_grad():
        change = (wide(x) - model(x)).abs().max().item()
    if change > 1e-4:  # cannot happen unless crnn/widen.py is wrong; never write such a file
        print(f"error: the widened model's logits differ by {change:.2g} from the original's", file=sys.stderr)
        return 1
    training = dict(meta["training"], widened_from=f"{meta['name']}:{meta['version']}")
    save_checkpoint(args.out, wide, charset, name=meta["name"], version=args.version, training=training)
    params = sum(t.numel() for t in wide.parameters())
    print(f"{args.out}: {meta['name']} {args.version}, {params / 1e6:.2f}M parameters (channels {list(args.channels)}, "
          f"LSTM {args.lstm_hidden}), logits within {change:.1g} of {meta['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Average the weights of checkpoints fine-tuned from one parent into one checkpoint (a model soup).

    python -m jobs.average runs/phase7/last.pt runs/phase8/last.pt --out crnn/weights/crnn_default.pt \
        --version 2026.11.24.5

Evaluate the result (`python -m jobs.evaluate`) before shipping it: averaging helps runs that share a
parent and an architecture, and is refused for checkpoints of different models.
"""

from __future__ import annotations

import argparse
import sys

from crnn.checkpoint import CheckpointError, average_checkpoints, save_checkpoint


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="average", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help="two or more checkpoints written by jobs.train")
    p.add_argument("--out", required=True, help="where to write the averaged checkpoint")
    p.add_argument("--version", required=True, help="version recorded in the averaged checkpoint")
    p.add_argument("--name", help="model name (default: the first checkpoint's)")
    args = p.parse_args(argv)
    try:
        model, charset, meta = average_checkpoints(args.checkpoints)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    save_checkpoint(args.out, model, charset, name=args.name or meta["name"], version=args.version,
                    training=meta["training"])
    print(f"{args.out}: {meta['name']} {args.version}, the mean of {', '.join(meta['training']['averaged_from'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

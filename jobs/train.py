"""Train the CRNN: `python -m jobs.train --real-parquet ../shared/data/funsd_train_words.parquet --steps 20000`.

Every TrainConfig field is a flag (crnn/training/train.py); checkpoints land in --out-dir.
"""

from __future__ import annotations

import argparse

from crnn.config import add_flags, from_flags
from crnn.training.train import TrainConfig, train


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(p, TrainConfig)
    print("best checkpoint:", train(from_flags(TrainConfig, p.parse_args(argv))))


if __name__ == "__main__":
    main()

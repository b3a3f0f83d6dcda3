"""Train the CRNN: `python -m jobs.train --real-parquet ../shared/data/funsd_train_words.parquet --steps 20000`.

Every TrainConfig field is a flag (see crnn/training/train.py); checkpoints land in --out-dir.
"""

from __future__ import annotations

import argparse
import dataclasses

from crnn.training.train import TrainConfig, train


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=f.default)
        else:
            kind = {"int": int, "float": float}.get(f.type.split(" ")[0], str)
            p.add_argument(flag, type=kind, default=f.default)
    cfg = TrainConfig(**vars(p.parse_args(argv)))
    print("best checkpoint:", train(cfg))


if __name__ == "__main__":
    main()

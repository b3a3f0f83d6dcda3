"""Demo: render a small sample of document-text crops, OCR them with the default model, show the results.

    python -m jobs.demo [--n 200] [--output demo_output]

Writes the crops to <output>/input.parquet, runs the pipeline (a local Ray) into <output>/ocr,
then prints predictions beside their ground truth and the job summary.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import pandas as pd

from crnn.checkpoint import load_checkpoint
from crnn.metrics import text_metrics
from crnn.training.synth import render_parquet
from pipeline.errors import UserError
from pipeline.run import OcrOptions, run_ocr


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200, help="crops to render (default 200)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--output", default="demo_output", help="folder for the sample and the OCR output")
    p.add_argument("--model", help="checkpoint (default: the shipped model)")
    args = p.parse_args(argv)

    _, _, meta = load_checkpoint(args.model)
    if not meta.get("training"):
        print("NOTE: this model is UNTRAINED (random weights): expect garbage text until trained weights ship.")
    out = Path(args.output)
    if out.exists():
        shutil.rmtree(out)
    render_parquet(str(out / "input.parquet"), args.n, args.seed)
    try:
        summary = run_ocr(OcrOptions(input=str(out / "input.parquet"), output=str(out / "ocr"), model=args.model))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

    df = pd.read_parquet(out / "ocr").sort_values("id")
    pd.set_option("display.width", 120), pd.set_option("display.max_colwidth", 45)
    print(f"\nmodel {summary['model']} on {len(df)} rendered crops (first 15):")
    print(df[["id", "truth", "text", "score"]].head(15).to_string(index=False))
    m = text_metrics(df["text"].fillna("").tolist(), df["truth"].tolist())
    print(f"\nexact {m['exact']:.3f}   case-insensitive {m['case_insensitive']:.3f}   CER {m['cer']:.3f}")
    print("summary:", json.dumps({k: v for k, v in summary.items() if k != "options"}))
    print(f"output: {out / 'ocr'}  (pandas.read_parquet('{out / 'ocr'}'))")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluate a model on labelled crops by running the same pipeline a user runs.

    python -m jobs.evaluate --input labelled.parquet --label-column text --output eval/ [--model m.pt]
    python -m jobs.evaluate --input ../shared/data/funsd_train_words.parquet --holdout-docs 0.1

Prints and writes <output>/report.json: exact / case-insensitive / letters-and-digits / spaces-ignored accuracy,
CER, accuracy by label length (and, on a synthetic set, by degradation), exact accuracy above score
thresholds, the commonest character confusions and the worst examples.
Labels outside the model's charset (after normalisation) are reported and scored as they are.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from rapidfuzz.distance import Levenshtein

from crnn.charset import Charset, normalize
from crnn.data import split_by_doc
from crnn.metrics import accuracy_by_score, confusions, text_metrics
from crnn.synth import render_parquet
from pipeline.errors import UserError
from pipeline.predict import OUTPUT_COLUMNS
from pipeline.read import find_source
from pipeline.run import OcrOptions, run_ocr
from pipeline.storage import Storage

# The synthetic test set of MODEL.md's figures, as `render_parquet` describes it.
REFERENCE_SET = {"n": 1000, "seed": 20_261_123, "fonts": 175, "words": "/usr/share/dict/american-english",
                 "set_id": "bd2cb4dd97f9"}


def report(df: pd.DataFrame, label: str, worst: int = 25) -> dict:
    """Metrics over a DataFrame holding `text` (prediction) and the label column."""
    preds, labels = df["text"].fillna("").tolist(), df[label].map(normalize).tolist()

    def where(selected) -> dict:
        return text_metrics([p for p, s in zip(preds, selected) if s], [t for t, s in zip(labels, selected) if s])

    by_len = {}
    lengths = df[label].str.len()
    for lo, hi in [(1, 1), (2, 3), (4, 6), (7, 10), (11, 20), (21, 1000)]:
        sel = ((lengths >= lo) & (lengths <= hi)).to_numpy()
        if sel.any():
            by_len[f"{lo}-{hi}" if hi < 1000 else f"{lo}+"] = where(sel)
    by_degradation = {}
    if "degradations" in df.columns:  # synthetic test sets name what the renderer did to each crop
        applied = [set(d) if d is not None else set() for d in df["degradations"]]
        by_degradation = {name: where([name in a for a in applied]) for name in sorted(set().union(*applied))}
        by_degradation["none"] = where([not a for a in applied])
    dist = [Levenshtein.distance(p, t) for p, t in zip(preds, labels)]
    order = sorted(range(len(dist)), key=lambda i: -dist[i])
    charset = Charset()
    return {
        "overall": text_metrics(preds, labels),
        "outside_charset": int(sum(not charset.can_encode(t) for t in labels)),
        "errors": int(df["error"].notna().sum()),
        "by_label_length": by_len,
        **({"by_degradation": by_degradation} if by_degradation else {}),
        "by_score": accuracy_by_score(preds, labels, df["score"].tolist()),
        "confusions": [{"label": a, "predicted": b, "count": c} for a, b, c in confusions(preds, labels)],
        "worst": [{"label": labels[i], "predicted": preds[i], "score": float(df["score"].iloc[i])}
                  for i in order[:worst]],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--input", help="labelled Parquet (file, folder or prefix)")
    p.add_argument("--synthetic", type=int, metavar="N",
                   help="instead of --input: N rendered crops (crnn.synth) with a fixed --seed, label column 'truth'")
    p.add_argument("--seed", type=int, default=REFERENCE_SET["seed"], help="seed of the synthetic test set")
    p.add_argument("--label-column", default="text")
    p.add_argument("--image-column", default="image")
    p.add_argument("--output", help="folder for the OCR output and report.json (default: a temporary folder)")
    p.add_argument("--model")
    p.add_argument("--holdout-docs", type=float, metavar="FRACTION",
                   help="evaluate only the validation documents jobs.train holds out (by --doc-column)")
    p.add_argument("--doc-column", default="doc_id")
    p.add_argument("--decoder", choices=["greedy", "beam"], default="greedy")
    args = p.parse_args(argv)

    out = Path(args.output or tempfile.mkdtemp(prefix="evaluate-"))
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    if not args.input and not args.synthetic:
        p.error("give --input or --synthetic N")
    source = args.input
    if args.synthetic:
        source = args.input = str(out / f"synthetic-{args.seed}.parquet")
        synthetic = render_parquet(source, args.synthetic, args.seed)
        args.label_column = "truth"
        # The set depends on the fonts and word list installed: say whether it is the one MODEL.md reports.
        ref = REFERENCE_SET
        print(f"synthetic set {synthetic['set_id']}: {synthetic['n']} crops, seed {synthetic['seed']}, "
              f"{synthetic['fonts']} font files, words from {synthetic['words']}: " + (
                  "the set MODEL.md reports" if synthetic["set_id"] == ref["set_id"] else
                  f"not the set MODEL.md reports ({ref['set_id']}: {ref['n']} crops, seed {ref['seed']}, {ref['fonts']} "
                  f"font files, words from {ref['words']}; crnn/synth.py names the Debian packages)"))
    try:
        if args.holdout_docs:  # the same whole-document split as training
            table = pq.read_table(args.input)
            if args.doc_column not in table.column_names:
                raise UserError(f"doc column {args.doc_column!r} not in {args.input!r}; columns are: "
                                f"{', '.join(table.column_names)}")
            mask = split_by_doc(table[args.doc_column].to_pylist(), args.holdout_docs)
            source = str(out / "holdout.parquet")
            pq.write_table(table.filter(mask), source)
        # A missing label column is found before the OCR, not after it has read every crop.
        columns = find_source(Storage(source), "parquet", args.image_column).columns
        if args.label_column not in columns:
            raise UserError(f"label column {args.label_column!r} not in {args.input!r}; columns are: "
                            f"{', '.join(columns)} (pass --label-column)")
        summary = run_ocr(OcrOptions(input=source, output=str(out / "ocr"), model=args.model,
                                     image_column=args.image_column, decoder=args.decoder))
        df = pd.read_parquet(out / "ocr")
        label = args.label_column + "_input" if args.label_column in OUTPUT_COLUMNS else args.label_column
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rep = {"model": summary["model"], "input": args.input, "rows": len(df),
           **({"synthetic_set": synthetic} if args.synthetic else {}), **report(df, label)}
    (out / "report.json").write_text(json.dumps(rep, indent=2))
    o = rep["overall"]
    print(f"\n{rep['model']} on {o['n']} crops of {args.input}")
    print(f"exact {o['exact']:.4f}  case-insensitive {o['case_insensitive']:.4f}  "
          f"letters+digits {o['alnum_only']:.4f}  spaces ignored {o['ignore_spaces']:.4f}  CER {o['cer']:.4f}")
    for k, v in rep["by_label_length"].items():
        print(f"  length {k:>6s}: n={v['n']:5d} exact {v['exact']:.4f} CER {v['cer']:.4f}")
    if "by_degradation" in rep:
        print("  exact by degradation (crops):", ", ".join(
            f"{k} {v['exact']:.3f} ({v['n']})" for k, v in sorted(rep["by_degradation"].items(), key=lambda kv: kv[1]["exact"])))
    print("  by score (share of crops kept, exact among them / below):", ", ".join(
        f">={r['min_score']}: {r['kept']:.3f} at {r['exact']:.3f} / {r['exact_below']:.3f}" for r in rep["by_score"]))
    print("commonest confusions (label -> predicted):",
          ", ".join(f"{c['label']!r}->{c['predicted']!r} x{c['count']}" for c in rep["confusions"][:10]))
    print(f"report: {out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Evaluate a model on labelled crops by running the same pipeline a user runs.

    python -m jobs.evaluate --split validation [--data-dir ../shared/data] [--model m.pt] [--baseline b.pt|none]
    python -m jobs.evaluate --input labelled.parquet --label-column text --output eval/ [--model m.pt]
    python -m jobs.evaluate --synthetic 1000

--split validation|test: the fixed document splits of crnn/training/splits.json, forms (FUNSD word crops, labels
case-sensitive) and receipts (SROIE line crops, labels upper case by convention, so scored case-insensitively)
side by side. Headline per kind: forms exact and CER; receipts case-insensitive exact and case-insensitive CER.
`validation` compares variants; `test` is for the ship decision only. Each split's rows are written to
<output>/<kind>.parquet and read by the pipeline into <output>/ocr/<kind>/. The baseline (default: the shipped
model; `--baseline none`: none; skipped when --model is the shipped model too) reads the same crops into
<output>/baseline/<kind>/, and each kind gets paired counts on its headline accuracy: fixed (baseline wrong,
model right), broken (baseline right, model wrong), the exact sign test (McNemar) of fixed against broken, and
the model-minus-baseline differences (accuracy, CER) with their SEs. Nothing is cached: every run reads every
crop with both models.

Standard errors (±) are cluster-robust by document (`crnn.metrics.standard_error`): crops of one form or
receipt share its scan and print and are not independent, so each SE is that of a mean (a CER: of a ratio of
edits to label characters) with documents as clusters, the sandwich estimate with the G/(G-1) factor over G
documents; no bootstrap, so the figures are deterministic. The sign test's p-value takes crops as independent
and is therefore optimistic; the differences' SEs are paired and by document.

--input / --synthetic: one labelled set, no baseline; SEs by --doc-column where the set has it, else by crop.

Prints and writes <output>/report.json: exact / case-insensitive / letters-and-digits / spaces-ignored accuracy,
CER (also case-insensitive), accuracy by label length (and, on a synthetic set, by degradation), exact accuracy
above score thresholds, the commonest character confusions and the worst examples.
Labels outside the model's charset (after normalisation) are reported and scored as they are.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from rapidfuzz.distance import Levenshtein

from crnn.charset import Charset, normalize
from crnn.checkpoint import DEFAULT_MODEL, CheckpointError
from crnn.config import add_flags
from crnn.backends import BACKENDS, resolve as resolve_backend
from crnn.recognizer import Recognizer
from crnn.training import splits
from crnn.training.data import split_by_doc
from crnn.metrics import (accuracy_by_score, confusions, crop_scores, metric_errors, paired_counts,
                                   standard_error, text_metrics)
from crnn.training.synth import SynthConfig, render_parquet
from pipeline.errors import UserError
from pipeline.schema import output_name
from pipeline.read import find_source
from pipeline.run import OcrOptions, run_ocr
from pipeline.storage import Storage

# The synthetic test set of MODEL.md's figures, as `render_parquet` describes it.
REFERENCE_SET = {"n": 1000, "seed": 20_261_123, "fonts": 175, "words": "/usr/share/dict/american-english",
                 "set_id": "bd2cb4dd97f9"}

# The two kinds of document of --split, in the order the table shows them. `headline`: (accuracy, error rate).
KINDS = {
    "forms": {"dataset": "funsd", "case_insensitive": False, "headline": ("exact", "cer"),
              "about": "FUNSD word crops of scanned forms, labels case-sensitive"},
    "receipts": {"dataset": "sroie", "case_insensitive": True, "headline": ("case_insensitive", "cer_case_insensitive"),
                 "about": "SROIE line crops of receipts, labels upper case by convention: scored case-insensitively"},
}
SPLIT_COLUMNS = ("id", "image", "text", "doc_id")
SE_METHOD = ("cluster-robust standard error by document (doc_id): a mean (a CER: a ratio of edits to label "
             "characters) with documents as clusters, sandwich estimate with the G/(G-1) factor (crnn.metrics."
             "standard_error); the sign test's p-value takes crops as independent (optimistic)")
TEST_REMINDER = ("note: the test split is for the ship decision only; compare variants and tune on --split validation")
LENGTHS = [(1, 1), (2, 3), (4, 6), (7, 10), (11, 20), (21, 1000)]


def report(df: pd.DataFrame, label: str, worst: int = 25, groups=None, case_insensitive: bool = False) -> dict:
    """Metrics over a DataFrame holding `text` (prediction) and the label column.

    groups: one document id per row: adds `documents` and `se` (cluster-robust standard errors of every figure,
        `crnn.metrics.metric_errors`) to `overall` and to each `by_label_length` bucket.
    case_insensitive: rank `worst`, count `confusions` and score `by_score` on lower-cased text (the metrics
        themselves report both ways regardless)."""
    preds, labels = df["text"].fillna("").tolist(), df[label].map(normalize).tolist()
    groups = None if groups is None else [str(g) for g in groups]

    def where(selected) -> dict:
        p = [p for p, s in zip(preds, selected) if s]
        t = [t for t, s in zip(labels, selected) if s]
        m = text_metrics(p, t)
        if groups is not None:
            g = [g for g, s in zip(groups, selected) if s]
            m.update(documents=len(set(g)), se=metric_errors(p, t, g))
        return m

    by_len = {}
    lengths = df[label].str.len()
    for lo, hi in LENGTHS:
        sel = ((lengths >= lo) & (lengths <= hi)).to_numpy()
        if sel.any():
            by_len[f"{lo}-{hi}" if hi < 1000 else f"{lo}+"] = where(sel)
    by_degradation = {}
    if "degradations" in df.columns:  # synthetic test sets name what the renderer did to each crop
        applied = [set(d) if d is not None else set() for d in df["degradations"]]
        by_degradation = {name: where([name in a for a in applied]) for name in sorted(set().union(*applied))}
        by_degradation["none"] = where([not a for a in applied])
    fp, fl = ([s.lower() for s in preds], [s.lower() for s in labels]) if case_insensitive else (preds, labels)
    dist = [Levenshtein.distance(p, t) for p, t in zip(fp, fl)]
    order = sorted(range(len(dist)), key=lambda i: -dist[i])
    charset = Charset()
    ids = df["id"].tolist() if "id" in df.columns else None
    return {
        "overall": where([True] * len(preds)),
        "outside_charset": int(sum(not charset.can_encode(t) for t in labels)),
        "errors": int(df["error"].notna().sum()),
        "by_label_length": by_len,
        **({"by_degradation": by_degradation} if by_degradation else {}),
        "by_score": accuracy_by_score(fp, fl, df["score"].tolist()),
        "confusions": [{"label": a, "predicted": b, "count": c} for a, b, c in confusions(fp, fl)],
        "worst": [{"label": labels[i], "predicted": preds[i], "score": float(df["score"].iloc[i]),
                   **({"id": ids[i]} if ids else {})} for i in order[:worst]],
    }


def check_model(path: str | None, decoder: str, what: str = "--model", backend: str = "auto") -> None:
    """Fail early, with one line, on a checkpoint that does not load or a decoder or backend the Recognizer
    refuses (the pipeline's actors would otherwise fail after the job has started). Builds and caches the
    ONNX model of backend onnx, once, before the actors need it."""
    try:
        Recognizer.load(path, device="cpu", decoder=decoder, backend=resolve_backend(backend))
    except CheckpointError as e:
        raise UserError(f"{what}: {e}") from None
    except ImportError as e:
        raise UserError(f"--backend: {e}") from None
    except ValueError as e:
        raise UserError(str(e)) from None   # (names the decoder or backend refused)


def _fmt(value: float, se: float | None = None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:.{digits}f}"
    return text if se is None else text + (" ± -" if math.isnan(se) else f" ± {se:.{digits}f}")


def _signed(value: float, se: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.4f} ± " + ("-" if math.isnan(se) else f"{se:.4f}")


def _same_model(a: str | None, b: str | None) -> bool:
    """Whether two --model values name one checkpoint file (None: the shipped one)."""
    return os.path.realpath(a or DEFAULT_MODEL) == os.path.realpath(b or DEFAULT_MODEL)


def _read_split(data_dir: Path, kind: str, split: str, out: Path) -> tuple[Path, int, int, int]:
    """Write the split's rows of the kind's data file to <out>/<kind>.parquet: (path, rows, documents found,
    documents in the split)."""
    dataset = KINDS[kind]["dataset"]
    path = data_dir / splits.data_file(dataset)
    table = pq.read_table(path)
    missing = [c for c in SPLIT_COLUMNS if c not in table.column_names]
    if missing:
        raise UserError(f"{path} lacks column(s) {', '.join(missing)}; columns are: {', '.join(table.column_names)}")
    doc_ids = table["doc_id"].to_pylist()
    mask = splits.in_split(doc_ids, dataset, split)
    expected = len(splits.docs(dataset, split))
    if not mask.any():
        raise UserError(f"{path}: no row of the {expected} {split} documents of {dataset} "
                        f"(crnn/training/splits.json): is it the {splits.data_file(dataset)} the splits refer to?")
    subset = out / f"{kind}.parquet"
    pq.write_table(table.filter(mask), subset)
    found = len({str(d) for d, m in zip(doc_ids, mask) if m})
    return subset, int(mask.sum()), found, expected


def _run(source: Path, output: Path, model: str | None, decoder: str, backend: str = "auto") -> tuple[dict, pd.DataFrame]:
    summary = run_ocr(OcrOptions(input=str(source), output=str(output), model=model, decoder=decoder, backend=backend))
    df = pd.read_parquet(output).sort_values("id", kind="stable").reset_index(drop=True)
    return summary, df


def evaluate_split(args, out: Path) -> dict:
    """--split: forms and receipts of the fixed split, model (and baseline) on the same crops. Returns the report."""
    data_dir = Path(args.data_dir)
    files = {kind: data_dir / splits.data_file(k["dataset"]) for kind, k in KINDS.items()}
    if not data_dir.is_dir():
        raise UserError(f"data dir {str(data_dir.resolve())!r} not found (looked for "
                        f"{' and '.join(p.name for p in files.values())} there; pass --data-dir)")
    absent = [p for p in files.values() if not p.is_file()]
    if absent:
        raise UserError(f"{' and '.join(repr(str(p.resolve())) for p in absent)} not found (--split needs "
                        f"{' and '.join(p.name for p in files.values())} in --data-dir {str(data_dir)!r})")
    baseline = None if args.baseline in (None, "shipped") else args.baseline
    baseline_decoder = args.baseline_decoder or args.decoder
    run_baseline = args.baseline != "none" and not (_same_model(args.model, baseline) and baseline_decoder == args.decoder
                                                    and resolve_backend(args.backend) == resolve_backend(args.baseline_backend))
    check_model(args.model, args.decoder, backend=args.backend)
    if run_baseline:
        check_model(baseline, baseline_decoder, "--baseline", backend=args.baseline_backend)
    if args.split == "test":
        print(TEST_REMINDER)
    if out.exists():  # after the checks: a mistyped flag leaves the last run's output alone
        shutil.rmtree(out)
    out.mkdir(parents=True)

    rep = {"split": args.split, "data_dir": str(data_dir.resolve()), "decoder": args.decoder,
           "backend": resolve_backend(args.backend), "baseline_decoder": baseline_decoder if run_baseline else None,
           "baseline_backend": resolve_backend(args.baseline_backend) if run_baseline else None, "se_method": SE_METHOD,
           "model_path": args.model, "baseline_path": baseline if run_baseline else None, "kinds": {}}
    if args.baseline != "none" and not run_baseline:
        rep["baseline_skipped"] = ("--model is the baseline (the same checkpoint, decoder and backend): nothing to "
                                   "compare")
    for kind, k in KINDS.items():
        subset, rows, found, expected = _read_split(data_dir, kind, args.split, out)
        summary, df = _run(subset, out / "ocr" / kind, args.model, args.decoder, args.backend)
        rep["model"] = summary["model"]
        label = "text_input"  # the label column `text` clashes with the prediction's
        groups = df["doc_id"].astype(str).tolist()
        r = {"dataset": k["dataset"], "about": k["about"], "file": str(files[kind].resolve()), "input": str(subset),
             "rows": len(df), "documents": found, "documents_in_split": expected,
             "case_insensitive": k["case_insensitive"], "headline": dict(zip(("accuracy", "error_rate"), k["headline"])),
             "wall_s": summary["wall_s"],
             **report(df, label, groups=groups, case_insensitive=k["case_insensitive"])}
        if run_baseline:
            bsummary, bdf = _run(subset, out / "baseline" / kind, baseline, baseline_decoder, args.baseline_backend)
            if bdf["id"].tolist() != df["id"].tolist():
                raise RuntimeError(f"{kind}: the baseline's output rows differ from the model's (ids do not match)")
            rep["baseline"] = bsummary["model"]
            labels = df[label].map(normalize).tolist()
            m = crop_scores(df["text"].fillna("").tolist(), labels)
            b = crop_scores(bdf["text"].fillna("").tolist(), labels)
            acc, rate = k["headline"]
            edits = "edits" if rate == "cer" else "edits_case_insensitive"
            paired = {"metric": acc, **paired_counts(b[acc], m[acc], groups)}
            paired["error_rate"] = rate
            paired["error_rate_difference"] = float((m[edits].sum() - b[edits].sum()) / max(m["chars"].sum(), 1))
            paired["error_rate_difference_se"] = standard_error(m[edits] - b[edits], groups, m["chars"])
            r["paired"] = paired
            r["baseline_overall"] = report(bdf, label, worst=0, groups=groups,
                                           case_insensitive=k["case_insensitive"])["overall"]
        rep["kinds"][kind] = r
    return rep


ROWS = [("exact", "exact"), ("case_insensitive", "case-insensitive exact"), ("alnum_only", "letters+digits"),
        ("ignore_spaces", "spaces ignored"), ("cer", "CER"), ("cer_case_insensitive", "case-insensitive CER")]


def print_split(rep: dict) -> None:
    kinds = rep["kinds"]
    w = 24
    print(f"\n{rep['model']} on the {rep['split']} split (decoder {rep['decoder']}, backend {rep['backend']}); "
          f"± = standard error, cluster-robust by document; * = headline")
    for kind, r in kinds.items():
        print(f"  {kind}: {r['about']}")
    print(f"{'':24s}" + "".join(f"{kind:>{w}s}" for kind in kinds))
    def count(r):
        docs = r["documents"] if r["documents"] == r["documents_in_split"] else f"{r['documents']}/{r['documents_in_split']}"
        return f"{r['rows']} ({docs})"
    print(f"{'n crops (documents)':24s}" + "".join(f"{count(r):>{w}s}" for r in kinds.values()))
    for key, name in ROWS:
        cells = []
        for r in kinds.values():
            o = r["overall"]
            star = "*" if key in r["headline"].values() else " "
            cells.append(f"{_fmt(o[key], o['se'][key]) + star:>{w}s}")
        print(f"{name:24s}" + "".join(cells))
    print(f"{'failed crops':24s}" + "".join(f"{r['errors']:>{w}d}" for r in kinds.values()))
    print("by label length (headline accuracy ± SE / headline CER, crops):")
    buckets = [f"{lo}-{hi}" if hi < 1000 else f"{lo}+" for lo, hi in LENGTHS]
    for bucket in buckets:
        cells = []
        for r in kinds.values():
            v = r["by_label_length"].get(bucket)
            acc, rate = r["headline"]["accuracy"], r["headline"]["error_rate"]
            cell = "" if v is None else f"{_fmt(v[acc], v['se'][acc], 3)} / {v[rate]:.3f} ({v['n']})"
            cells.append(f"{cell:>{w + 8}s}")
        if any(c.strip() for c in cells):
            print(f"  length {bucket:>6s}        " + "".join(cells))
    for kind, r in kinds.items():
        print(f"{kind} by score (share kept, headline accuracy kept / below): " + ", ".join(
            f">={s['min_score']}: {s['kept']:.3f} at {s['exact']:.3f} / {s['exact_below']:.3f}" for s in r["by_score"]))
        print(f"{kind} commonest confusions (label -> predicted): " +
              ", ".join(f"{c['label']!r}->{c['predicted']!r} x{c['count']}" for c in r["confusions"][:8]))
    if "baseline" in rep:
        print(f"paired against baseline {rep['baseline']} (decoder {rep['baseline_decoder']}, backend "
              f"{rep['baseline_backend']}) on the same crops (headline metric; the sign test takes "
              f"crops as independent, the differences' SEs are by document):")
        for kind, r in kinds.items():
            p, b = r["paired"], r["baseline_overall"]
            print(f"  {kind:9s} {p['metric']}: baseline {_fmt(b[p['metric']], b['se'][p['metric']])}, "
                  f"fixed {p['fixed']}, broken {p['broken']} (both right {p['both_right']}, both wrong "
                  f"{p['both_wrong']}), difference {_signed(p['difference'], p['difference_se'])}, sign test "
                  f"p {p['p_value']:.3g}; {p['error_rate']} "
                  f"{_signed(p['error_rate_difference'], p['error_rate_difference_se'])}")
    elif "baseline_skipped" in rep:
        print(f"no baseline run: {rep['baseline_skipped']}")
    if rep["split"] == "test":
        print(TEST_REMINDER)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=splits.SPLITS,
                   help="forms and receipts of this fixed split (crnn/training/splits.json) from --data-dir, "
                        "side by side")
    p.add_argument("--data-dir", default=splits.DATA_DIR,
                   help="with --split: the folder holding "
                        + " and ".join(splits.data_file(k["dataset"]) for k in KINDS.values()))
    p.add_argument("--baseline", metavar="MODEL",
                   help="with --split: checkpoint to compare with on the same crops (default: the shipped model; "
                        "'none': no baseline); skipped when it is --model with the same decoder")
    p.add_argument("--baseline-decoder", metavar="DECODER",
                   help="with --split: the baseline's decoder (default: --decoder), e.g. --decoder lexicon "
                        "--baseline-decoder greedy compares two decoders on one model")
    p.add_argument("--input", help="labelled Parquet (file, folder or prefix)")
    p.add_argument("--synthetic", type=int, metavar="N",
                   help="instead of --input: N rendered crops (crnn.training.synth) with a fixed --seed, "
                        "label column 'truth'")
    p.add_argument("--seed", type=int, default=REFERENCE_SET["seed"], help="seed of the synthetic test set")
    p.add_argument("--label-column", default="text")
    p.add_argument("--output", help="folder for the OCR output and report.json (default: a temporary folder)")
    p.add_argument("--holdout-docs", type=float, metavar="FRACTION",
                   help="evaluate only the validation documents jobs.train holds out (by --doc-column)")
    p.add_argument("--doc-column", default="doc_id", help="document ids: crops of one document are one cluster for SEs")
    # The model and how it reads, as jobs.ocr takes them
    add_flags(p, OcrOptions, only=["model", "image_column", "decoder", "backend"])
    p.add_argument("--baseline-backend", default="auto", choices=("auto",) + BACKENDS,
                   help="the baseline's backend (default auto); --baseline-backend torch alone compares the "
                        "backends on the shipped model")
    args = p.parse_args(argv)

    if sum(map(bool, (args.split, args.input, args.synthetic))) != 1:
        p.error("give one of --split, --input or --synthetic N")
    out = Path(args.output or tempfile.mkdtemp(prefix="evaluate-"))
    if args.split:
        t0 = time.time()
        try:
            rep = evaluate_split(args, out)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        rep["wall_s"] = round(time.time() - t0, 1)
        (out / "report.json").write_text(json.dumps(rep, indent=2))
        print_split(rep)
        print(f"report: {out / 'report.json'} ({rep['wall_s']:.0f} s)")
        return 0

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    source = args.input
    if args.synthetic:
        source = args.input = str(out / f"synthetic-{args.seed}.parquet")
        # receipt_share=0: the set of forms-like text MODEL.md's synthetic figures were measured on
        synthetic = render_parquet(source, args.synthetic, args.seed, SynthConfig(receipt_share=0.0))
        args.label_column = "truth"
        # The set depends on the fonts and word list installed: say whether it is the one MODEL.md reports.
        ref = REFERENCE_SET
        print(f"synthetic set {synthetic['set_id']}: {synthetic['n']} crops, seed {synthetic['seed']}, "
              f"{synthetic['fonts']} font files, words from {synthetic['words']}: " + (
                  "the set MODEL.md reports" if synthetic["set_id"] == ref["set_id"] else
                  f"not the set MODEL.md reports ({ref['set_id']}: {ref['n']} crops, seed {ref['seed']}, {ref['fonts']} "
                  f"font files, words from {ref['words']}; crnn/training/synth.py names the Debian packages)"))
    try:
        check_model(args.model, args.decoder, backend=args.backend)
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
                                     image_column=args.image_column, decoder=args.decoder, backend=args.backend))
        df = pd.read_parquet(out / "ocr")
        label = output_name(args.label_column)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    doc = output_name(args.doc_column)
    by_doc = doc in df.columns
    groups = df[doc].astype(str).tolist() if by_doc else list(range(len(df)))
    rep = {"model": summary["model"], "input": args.input, "rows": len(df),
           "se_method": SE_METHOD if by_doc else "standard error by crop (no --doc-column in the input: crops taken "
                                                 "as independent)",
           **({"synthetic_set": synthetic} if args.synthetic else {}), **report(df, label, groups=groups)}
    (out / "report.json").write_text(json.dumps(rep, indent=2))
    o, se = rep["overall"], rep["overall"]["se"]
    print(f"\n{rep['model']} on {o['n']} crops" + (f" ({o['documents']} documents)" if by_doc else "") +
          f" of {args.input}; ± = standard error " + ("by document" if by_doc else "by crop"))
    print(f"exact {_fmt(o['exact'], se['exact'])}  case-insensitive {_fmt(o['case_insensitive'], se['case_insensitive'])}  "
          f"letters+digits {_fmt(o['alnum_only'], se['alnum_only'])}  spaces ignored "
          f"{_fmt(o['ignore_spaces'], se['ignore_spaces'])}  CER {_fmt(o['cer'], se['cer'])}")
    for k, v in rep["by_label_length"].items():
        print(f"  length {k:>6s}: n={v['n']:5d} exact {_fmt(v['exact'], v['se']['exact'])} CER {v['cer']:.4f}")
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

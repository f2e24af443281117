"""``hgc convert criteo IN --to norm|raw|parquet --out DIR``: Criteo TSV to a HugeCTR dataset;
``hgc convert adult DIR|TRAIN TEST --to norm|parquet --out DIR``: UCI Adult CSV to a Wide & Deep dataset."""

from __future__ import annotations

import argparse
import sys


def _fractions(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert raw data into a HugeCTR dataset",
        description="Convert raw data into a HugeCTR dataset (Norm, Raw or Parquet).",
    )
    kinds = p.add_subparsers(dest="kind", metavar="KIND")
    c = kinds.add_parser(
        "criteo",
        help="Criteo TSV (label, I1-I13, C1-C26) to Norm, Raw or Parquet",
        description="Criteo TSV to Norm (criteo2hugectr layout), Raw or Parquet + _metadata.json, with the "
        "preprocess.py encoding: frequency threshold, optional dense normalisation and feature "
        "crossing, and a train/val/test split. Streams the input twice (counting, then writing).",
    )
    c.add_argument("input", nargs="+", help="Criteo TSV file(s), read in order (.gz etc. detected)")
    c.add_argument("--to", required=True, choices=["norm", "raw", "parquet"], type=str.lower)
    c.add_argument("--out", required=True, help="output directory")
    c.add_argument("--normalize-dense", type=int, choices=[0, 1], default=1)
    c.add_argument("--feature-cross", type=int, choices=[0, 1], default=1)
    c.add_argument("--freq-threshold", type=int, default=6)
    c.add_argument("--split", type=_fractions, default=[0.8, 0.1, 0.1], help="train,val,test fractions")
    c.add_argument(
        "--samples-per-file",
        type=int,
        default=None,
        help="samples per data file (default 40960 for Norm, 1048576 for Parquet)",
    )
    c.add_argument("--files-per-list", type=int, default=0, help="Norm: files per file list (0 = one list)")
    c.add_argument("--check-type", choices=["Sum", "Non"], default="Sum")
    c.add_argument("--i64-input-key", action="store_true", help="Norm: 64-bit keys")
    c.add_argument("--float-label-dense", action="store_true", help="Raw: float32 label and dense")
    c.add_argument("--progress", dest="progress", action="store_true", default=None)
    c.add_argument("--no-progress", dest="progress", action="store_false")
    c.set_defaults(func=run)
    a = kinds.add_parser(
        "adult",
        help="UCI Adult CSV (adult.data, adult.test) to Norm or Parquet for Wide & Deep",
        description="UCI Adult (Census Income) to Norm or Parquet: a wide slot (base and crossed features) "
        "and one deep slot per categorical feature, standardised dense columns; vocabularies and statistics "
        "come from the training file only. Prints the slot_size_array and the DataReaderSparseParams.",
    )
    a.add_argument("input", nargs="+", metavar="DIR | TRAIN TEST",
                   help="a folder holding adult.data and adult.test, or the two files")
    a.add_argument("--to", required=True, choices=["norm", "parquet"], type=str.lower)
    a.add_argument("--out", required=True, help="output directory (train/ and test/ go under it)")
    a.add_argument("--min-count", type=int, default=2,
                   help="values seen fewer times in the training file share the out-of-vocabulary key")
    a.add_argument("--cross", action="append", default=None, metavar="F1,F2[,...]",
                   help="a crossed feature of the wide slot (repeatable; default: education,occupation; "
                        "age_bucket,education,occupation; native_country,occupation)")
    a.add_argument("--samples-per-file", type=int, default=0, help="samples per data file (0: one per split)")
    a.add_argument("--check-type", choices=["Sum", "Non"], default="Sum")
    a.add_argument("--i64-input-key", action="store_true", help="Norm: 64-bit keys")
    a.set_defaults(func=run_adult)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def run_adult(args: argparse.Namespace) -> int:
    from hgc.tools.adult import DEFAULT_CROSSES, adult_files, convert_adult

    crosses = DEFAULT_CROSSES if args.cross is None else [
        tuple(f.strip() for f in c.split(",") if f.strip()) for c in args.cross]
    try:
        if len(args.input) > 2:
            raise ValueError(f"input = {args.input}: give a folder holding adult.data and adult.test, or the "
                             f"two files")
        train, test = adult_files(args.input[0]) if len(args.input) == 1 else args.input
        res = convert_adult(train, test, args.out, {"norm": "Norm", "parquet": "Parquet"}[args.to],
                            crosses=crosses, min_count=args.min_count, check_type=args.check_type,
                            samples_per_file=args.samples_per_file, i64_keys=args.i64_input_key)
    except (ValueError, OSError) as e:
        print(f"hgc convert adult: error: {e}", file=sys.stderr)
        return 1
    for split, src in res.sources.items():
        rate = res.positive_rate[split]
        print(f"{split}: {res.num_samples[split]} samples (positive rate {rate:.3f}) -> {src}")
    print("slot_size_array = [" + ", ".join(str(s) for s in res.slot_size_array) + "]")
    print(f"dense_dim = {res.dense_dim}; sparse inputs (name, nnz per slot, fixed length, slots): "
          + ", ".join(str(sp) for sp in res.sparse_params()))
    return 0


def run(args: argparse.Namespace) -> int:
    from hgc.tools.criteo import convert_criteo

    res = convert_criteo(
        args.input,
        args.out,
        args.to,
        normalize_dense=bool(args.normalize_dense),
        feature_cross=bool(args.feature_cross),
        freq_threshold=args.freq_threshold,
        split=args.split,
        samples_per_file=args.samples_per_file,
        files_per_list=args.files_per_list,
        check_type=args.check_type,
        i64_input_key=args.i64_input_key,
        float_label_dense=args.float_label_dense,
        progress=args.progress,
    )
    for split, src in res.sources.items():
        print(f"{split}: {res.num_samples[split]} samples -> {src}")
    if res.slot_size_array:
        print("slot_size_array = [" + ", ".join(str(s) for s in res.slot_size_array) + "]")
    if res.vocabulary_size:
        print(f"vocabulary size (largest key + 1) = {res.vocabulary_size}")
    print(f"summary: {res.out_dir}/criteo_conversion.json")
    return 0

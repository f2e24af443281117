"""``hgc convert criteo IN --to norm|raw|parquet --out DIR``: Criteo TSV to a HugeCTR dataset."""

from __future__ import annotations

import argparse


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
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


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

"""``hgc generate``: write a synthetic Norm, Raw or Parquet dataset (Data Generator API from the shell)."""

from __future__ import annotations

import argparse


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.replace(" ", "").split(",") if x]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "generate",
        help="write a synthetic dataset (DataGeneratorParams from the shell)",
        description="Write synthetic training and evaluation data in HugeCTR's Norm, Raw or Parquet format. "
        "Norm/Parquet: --source and --eval-source are file lists; the data files go to "
        "<dir>/train and <dir>/val. Raw: they are the .bin files.",
    )
    p.add_argument("--format", required=True, choices=["norm", "raw", "parquet"], type=str.lower)
    p.add_argument("--source", required=True, help="training file list (Norm/Parquet) or .bin file (Raw)")
    p.add_argument("--eval-source", required=True, help="evaluation file list or .bin file")
    p.add_argument("--slot-size-array", required=True, type=_ints, help="comma-separated slot cardinalities")
    p.add_argument("--label-dim", type=int, default=1)
    p.add_argument("--dense-dim", type=int, default=13)
    p.add_argument("--num-slot", type=int, default=None, help="default: len(--slot-size-array)")
    p.add_argument("--nnz-array", type=_ints, default=None, help="keys per slot (default 1 each)")
    p.add_argument("--i64-input-key", action="store_true", help="64-bit keys (Norm, Parquet)")
    p.add_argument("--check-type", choices=["Sum", "Non"], default="Sum")
    p.add_argument("--dist-type", choices=["PowerLaw", "Uniform"], default="PowerLaw")
    p.add_argument("--power-law-type", choices=["Long", "Medium", "Short", "Specific"], default="Specific")
    p.add_argument("--alpha", type=float, default=1.2)
    p.add_argument("--num-files", type=int, default=128)
    p.add_argument("--eval-num-files", type=int, default=32)
    p.add_argument("--num-samples-per-file", type=int, default=40960)
    p.add_argument("--num-samples", type=int, default=5242880, help="Raw: training samples")
    p.add_argument("--eval-num-samples", type=int, default=1310720, help="Raw: evaluation samples")
    p.add_argument("--float-label-dense", action="store_true", help="Raw: float32 label/dense")
    p.add_argument("--num-threads", type=int, default=1)
    p.add_argument(
        "--learnable",
        action="store_true",
        help="hgc extension: labels drawn from a fixed random logistic model of the features",
    )
    p.add_argument("--seed", type=int, default=None, help="hgc extension: reproducible data")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from hgc.tools import DataGenerator, DataGeneratorParams

    fmt = {"norm": "Norm", "raw": "Raw", "parquet": "Parquet"}[args.format]
    num_slot = args.num_slot if args.num_slot is not None else len(args.slot_size_array)
    params = DataGeneratorParams(
        fmt,
        args.label_dim,
        args.dense_dim,
        num_slot,
        args.i64_input_key,
        args.source,
        args.eval_source,
        args.slot_size_array,
        args.nnz_array or [],
        check_type=args.check_type,
        dist_type=args.dist_type,
        power_law_type=args.power_law_type,
        alpha=args.alpha,
        num_files=args.num_files,
        eval_num_files=args.eval_num_files,
        num_samples_per_file=args.num_samples_per_file,
        num_samples=args.num_samples,
        eval_num_samples=args.eval_num_samples,
        float_label_dense=args.float_label_dense,
        num_threads=args.num_threads,
        learnable=args.learnable,
        seed=args.seed,
    )
    gen = DataGenerator(params)
    gen.generate()
    print(
        f"hgc generate: {fmt} data, training source {args.source}, evaluation source {args.eval_source} "
        f"({len(gen.written)} files written)"
    )
    return 0

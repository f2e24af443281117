"""Reader throughput: samples/s of each data reader into host batches, per format and worker count.

Criteo shape: 1 label, 13 dense, 26 one-hot slots (uint32 keys). The data is generated once into a temporary
directory (or --data-dir), then each reader runs in non-epoch mode and is timed over --seconds after a short
warm-up. Usage::

    python benchmarks/readers.py                      # all formats, workers 1, 2, 4, ... up to the CPU count
    python benchmarks/readers.py --formats norm raw --workers 1 16 --samples 4000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from hgc.runtime.data.reader import DataReader
from hgc.tools import DataGenerator, DataGeneratorParams

SLOTS = [10000 + 997 * i for i in range(26)]


def generate(data_dir: str, fmt: str, samples: int, per_file: int, check: str) -> str:
    """Write the dataset for one format (once); return its source."""
    sub = os.path.join(data_dir, f"{fmt}_{check}" if fmt == "norm" else fmt)
    name = "train.bin" if fmt == "raw" else "file_list.txt"
    src = os.path.join(sub, name)
    if os.path.exists(src):
        return src
    files = max(1, samples // per_file)
    p = DataGeneratorParams(
        {"norm": "Norm", "raw": "Raw", "parquet": "Parquet"}[fmt],
        1,
        13,
        26,
        False,
        src,
        os.path.join(sub, "eval.bin" if fmt == "raw" else "file_list_eval.txt"),
        SLOTS,
        check_type=check,
        dist_type="Uniform",
        num_files=files,
        eval_num_files=1,
        num_samples_per_file=per_file,
        num_samples=files * per_file,
        eval_num_samples=per_file,
        num_threads=os.cpu_count() or 1,
        seed=0,
    )
    DataGenerator(p).generate()
    return src


def measure(fmt: str, src: str, check: str, workers: int, batch: int, seconds: float, warmup: int) -> dict:
    kw: dict = {
        "label_dims": 1,
        "dense_dim": 13,
        "sparse": [(26, 1, True)],
        "repeat": True,
        "num_workers": workers,
        "prefetch": 4,
    }
    if fmt == "norm":
        kw["check_type"] = check
    r = DataReader({"norm": "Norm", "raw": "Raw", "parquet": "Parquet"}[fmt], src, batch, **kw)
    try:
        for _ in range(warmup):
            r.read()
        n = 0
        batches = 0
        t0 = time.perf_counter()
        while True:
            b = r.read()
            n += b.size
            batches += 1
            dt = time.perf_counter() - t0
            if dt >= seconds and batches >= 4:
                break
    finally:
        r.close()
    return {
        "format": fmt if fmt != "norm" else f"norm/{check}",
        "workers": workers,
        "batch": batch,
        "samples_per_s": n / dt,
        "batches": batches,
        "seconds": dt,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--formats", nargs="+", default=["norm", "raw", "parquet"], choices=["norm", "raw", "parquet"]
    )
    ap.add_argument("--checks", nargs="+", default=["Sum"], choices=["Sum", "Non"], help="Norm check types")
    ap.add_argument("--workers", nargs="+", type=int, default=None)
    ap.add_argument("--samples", type=int, default=2_000_000, help="samples in the generated dataset")
    ap.add_argument("--per-file", type=int, default=40960, help="samples per Norm/Parquet file")
    ap.add_argument("--batch-size", type=int, default=16384)
    ap.add_argument("--seconds", type=float, default=3.0, help="timed seconds per configuration")
    ap.add_argument("--warmup", type=int, default=8, help="batches read before timing")
    ap.add_argument("--data-dir", default=None, help="reuse/keep generated data here")
    ap.add_argument("--json", default=None, help="also write the results as JSON")
    args = ap.parse_args(argv)
    cpus = os.cpu_count() or 1
    workers = args.workers or sorted({w for w in (1, 2, 4, 8, 12, 16, cpus) if w <= cpus})
    data_dir = args.data_dir or tempfile.mkdtemp(prefix="hgc_reader_bench_")
    print(
        f"hgc reader benchmark: {platform.node()} ({cpus} CPUs), Criteo shape 1+13+26x1, "
        f"batch {args.batch_size}, data in {data_dir}"
    )
    results = []
    for fmt in args.formats:
        for check in args.checks if fmt == "norm" else ["Non"]:
            t = time.perf_counter()
            src = generate(data_dir, fmt, args.samples, args.per_file, check)
            print(
                f"  generated {fmt}{'/' + check if fmt == 'norm' else ''} in {time.perf_counter() - t:.1f} s"
            )
            for w in workers:
                res = measure(fmt, src, check, w, args.batch_size, args.seconds, args.warmup)
                results.append(res)
                print(
                    f"  {res['format']:<10} workers={w:<3} {res['samples_per_s'] / 1e6:8.2f} M samples/s "
                    f"({res['batches']} batches in {res['seconds']:.2f} s)",
                    flush=True,
                )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpus": cpus, "host": platform.node(), "results": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# One device call that checks the cuda target end to end, for sessions with little GPU time.
#   verify:   every gpu test (scripts/gpu_check.sh)                                    (~7 min)
#   examples: each example trained on the GPU with HGC_TARGET unset, compute-sanitizer on a DLRM and a DIN
#             step (scripts/sanitize.sh)                                                 (~2 min)
#   bench:    every model benchmark beside its PyTorch baseline (benchmarks/run_all.sh)  (~4 min)
#   quick:    the gpu tests matching QUICK_K (kernels a change touched), then bench in TF32 and fp16 with
#             CUDA graphs only (~6 min): one call to check a kernel change and measure it
#   multi:    (kind nvidia-h200-x2) the multi-GPU gpu tests (test_dist_cuda: logical GPUs, [[0, 1]] with peer
#             copies and NCCL, mpirun -np 2) and benchmarks/dlrm_multi.py in every launch style, fp16 and
#             TF32, fp16 also with pinned batches (~6 min); on one GPU the logical-GPU tests and dlrm_multi
#             --logical --stages
# The device tool brings back at most 8 files, so the logs are packed into $OUT/logs.tgz; $OUT/summary.txt
# holds the tables, and is printed last.
#   OUT=$OUT bash scripts/gpu_session.sh verify [pytest args]
#   OUT=$OUT bash scripts/gpu_session.sh examples
#   OUT=$OUT bash scripts/gpu_session.sh bench
#   OUT=$OUT bash scripts/gpu_session.sh quick
#   OUT=$OUT bash scripts/gpu_session.sh multi
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
WORK="${TMPDIR:-/tmp}/hgc_session"
rm -rf "$WORK" && mkdir -p "$WORK" "$OUT"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HGC_CACHE_DIR="${TMPDIR:-/tmp}/hgc_cache"
export HGC_COMMIT="${HGC_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}"  # the device copy's .git may lag: pass it
stage="${1:-verify}"; shift || true
summary="$OUT/summary.txt"
: >"$summary"

# gpu_tests BUDGET_S [pytest args]: scripts/gpu_check.sh, its table into the summary
gpu_tests() {
  local budget="$1"; shift
  OUT="$WORK/tests" timeout "$budget" bash scripts/gpu_check.sh "$@" >"$WORK/gpu_check.out" 2>&1
  { echo "== gpu tests $* (commit $HGC_COMMIT)"; cat "$WORK/tests/table.txt" 2>/dev/null || tail -20 "$WORK/gpu_check.out"; } >>"$summary"
}
# benchmarks BENCH_ARGS BUDGET_S: benchmarks/run_all.sh, its table into the summary
benchmarks() {
  OUT="$WORK/bench" HGC_DEBUG="${HGC_DEBUG:-2}" BENCH_ARGS="$1" BUDGET_S="$2" bash benchmarks/run_all.sh >"$WORK/bench.out" 2>&1
  { echo "== benchmarks (commit $HGC_COMMIT)"; cat "$WORK/bench/summary.txt" 2>/dev/null || tail -30 "$WORK/bench.out"; } >>"$summary"
}

case "$stage" in
  verify)
    gpu_tests "${TEST_BUDGET_S:-540}" "$@"
    ;;
  examples)
    echo "== examples on the GPU (HGC_TARGET unset)" >>"$summary"
    for m in wdl dcn deepfm dlrm ncf mmoe din; do
      timeout 60 python3 "examples/$m.py" >"$WORK/example_$m.log" 2>&1
      rc=$?
      line=$(grep -E "Target:|AUC" "$WORK/example_$m.log" | tr '\n' ' ' | cut -c1-220)
      printf '%-7s rc=%-3s %s\n' "$m" "$rc" "$line" >>"$summary"
    done
    OUT="$WORK/sanitizer" timeout 240 bash scripts/sanitize.sh >"$WORK/sanitize.out" 2>&1
    { echo "== compute-sanitizer"; cat "$WORK/sanitizer/table.txt" 2>/dev/null || tail -10 "$WORK/sanitize.out"; } >>"$summary"
    ;;
  bench)
    benchmarks "${BENCH_ARGS:---graph both}" "${BUDGET_S:-540}"
    ;;
  quick)
    k="${QUICK_K:-fused_update or InnerProduct or bias or Fused or nteraction or copy or Concat or dlrm or wdl}"
    gpu_tests "${TEST_BUDGET_S:-200}" -k "$k" "$@"
    benchmarks "--precisions tf32,fp16 --graph on --top ${TOP:-25}" "${BUDGET_S:-330}"
    ;;
  multi)
    export NCCL_NVLS_ENABLE=0
    gpu_tests "${TEST_BUDGET_S:-240}" -k "test_dist_cuda" "$@"
    gpus=$(nvidia-smi -L 2>/dev/null | wc -l)
    args="--iters 20"
    [ "$gpus" -lt 2 ] && args="$args --logical --stages"
    # the headline first (--pinned: batches in page-locked memory, as the readers hand them over); a call is
    # capped at 600 s and the summary is written as it goes
    for run in "fp16 --pinned" fp16 tf32; do
      log="$WORK/dlrm_multi_${run// /_}.log"
      echo "== dlrm_multi $run $args (commit $HGC_COMMIT, $gpus GPU(s))" >>"$summary"
      timeout "${MULTI_TIMEOUT:-150}" python3 benchmarks/dlrm_multi.py $args --precision $run \
        --json "$WORK/dlrm_multi.jsonl" >"$log" 2>&1
      grep -E "^\||^RATIO|^  |^-- stages" "$log" >>"$summary" || tail -5 "$log" >>"$summary"
    done
    ;;
  *)
    echo "usage: gpu_session.sh verify|examples|bench|quick|multi [pytest args]" >&2
    exit 2
    ;;
esac
tar -czf "$OUT/logs.tgz" -C "$WORK" . 2>/dev/null
cat "$summary"

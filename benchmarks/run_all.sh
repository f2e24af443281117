#!/usr/bin/env bash
# Every model benchmark in one call on the GPU machine: the GPU's peaks once, hgc for each model, then each
# model's PyTorch baseline, then one table of the whole run. Everything lands in $OUT (default ./out):
# all.log (the full output), results.jsonl (one line per result), peaks.json, summary.txt.
#
#   OUT=/tmp/o bash benchmarks/run_all.sh                       # all models, all precisions, baselines
#   MODELS="dlrm" BENCH_ARGS="--precisions fp32,fp16" bash benchmarks/run_all.sh
#   BASELINES=0 bash benchmarks/run_all.sh                      # hgc only
# HGC_DEBUG=2 adds each variant's per-kernel table. MICRO=1 runs benchmarks/micro.py first. E2E=0 skips the
# end-to-end / compile-time run (benchmarks/e2e.py) that closes the call.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
export HGC_CACHE_DIR="${HGC_CACHE_DIR:-${TMPDIR:-/tmp}/hgc_cache}" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python3}"
MODELS="${MODELS:-dlrm dcn deepfm wdl}"
ARGS="${BENCH_ARGS:-}"
LOG="$OUT/all.log"
start=$(date +%s)
budget="${BUDGET_S:-100000}"
left() { echo $(( budget - ($(date +%s) - start) )); }
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  commit: ${HGC_COMMIT:-unknown}"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu,power.draw \
    --format=csv,noheader 2>&1
  "$PY" -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)" 2>&1
  "$PY" -c "import torch; print('torch', torch.__version__)" 2>&1
} 2>&1 | tee -a "$LOG"
if [ "${MICRO:-0}" = "1" ]; then
  timeout 120 "$PY" benchmarks/micro.py 2>&1 | tee -a "$LOG"
fi
"$PY" benchmarks/common.py peaks --peaks "$OUT/peaks.json" 2>&1 | tee -a "$LOG"
for m in $MODELS; do
  t=$(left); [ "$t" -lt 30 ] && { echo "budget spent: skipping hgc $m" | tee -a "$LOG"; continue; }
  timeout "$(( t < ${MODEL_TIMEOUT:-300} ? t : ${MODEL_TIMEOUT:-300} ))" "$PY" benchmarks/$m.py --no-baseline \
    --json "$OUT/results.jsonl" --peaks "$OUT/peaks.json" $ARGS 2>&1 | tee -a "$LOG"
done
if [ "${BASELINES:-1}" = "1" ]; then
  for m in $MODELS; do
    t=$(left); [ "$t" -lt 60 ] && { echo "budget spent: skipping the $m baseline" | tee -a "$LOG"; continue; }
    timeout "$t" "$PY" benchmarks/$m.py --precisions "" --baseline-timeout "$(( t - 10 ))" \
      --json "$OUT/results.jsonl" $ARGS 2>&1 | tee -a "$LOG"
  done
fi
if [ "${E2E:-1}" = "1" ]; then  # DLRM from a Raw file vs in memory (>= 90 %), compile time cold / cached
  t=$(left); [ "$t" -lt 60 ] && echo "budget spent: skipping e2e" | tee -a "$LOG" || \
    timeout "$(( t < 150 ? t : 150 ))" "$PY" benchmarks/e2e.py --compile --samples 1048576 --iters 20 2>&1 \
      | tee -a "$LOG" | tee "$OUT/e2e.txt"
fi
"$PY" benchmarks/common.py summary "$OUT/results.jsonl" 2>&1 | tee "$OUT/summary.txt"
tail -n 6 "$OUT/e2e.txt" 2>/dev/null | tee -a "$OUT/summary.txt"

#!/usr/bin/env bash
# compute-sanitizer on the cuda target: one DLRM and one DIN training step (scripts/one_step.py) under
# memcheck and racecheck. Logs go to $OUT (default ./out): baseline.log (the steps without the sanitizer),
# <tool>-<model>.log (sanitizer report + the step's own line), table.txt. The last thing printed is the table:
# tool, model, status, errors found.
#   OUT=... bash scripts/sanitize.sh [MODELS...]      (default: dlrm din; TOOLS="memcheck racecheck")
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if [ $# -gt 0 ]; then MODELS=("$@"); else MODELS=(dlrm din); fi
read -r -a TOOLS <<<"${TOOLS:-memcheck racecheck}"
STEP_TIMEOUT="${STEP_TIMEOUT:-90}"  # seconds per sanitized step
ONE_STEP="${ONE_STEP:-scripts/one_step.py}"
export HGC_CACHE_DIR="${HGC_CACHE_DIR:-${TMPDIR:-/tmp}/hgc_cache}"  # the baseline run fills CuPy's cubin cache
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-${TMPDIR:-/tmp}/hgc_numba_cache}"
export PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1

if [ -d .wheels ]; then  # wheels carried with the working tree fill in missing packages
  for mod in jinja2 networkx numba; do
    "$PY" -c "import $mod" >/dev/null 2>&1 ||
      "$PY" -m pip install -q --no-index --find-links .wheels "$mod" >>"$OUT/baseline.log" 2>&1 || true
  done
fi

# compute-sanitizer: $COMPUTE_SANITIZER, PATH, CUDA toolkits, then NVIDIA's pip packages under site-packages
find_sanitizer() {
  local c
  for c in "${COMPUTE_SANITIZER:-}" "$(command -v compute-sanitizer 2>/dev/null)"; do
    [ -n "$c" ] && [ -x "$c" ] && { echo "$c"; return 0; }
  done
  for c in /usr/local/cuda/bin/compute-sanitizer /usr/local/cuda*/bin/compute-sanitizer \
           /usr/local/cuda*/compute-sanitizer/compute-sanitizer /opt/nvidia/*/bin/compute-sanitizer \
           /opt/cuda*/bin/compute-sanitizer /usr/lib/nvidia-cuda-toolkit/bin/compute-sanitizer; do
    [ -x "$c" ] && { echo "$c"; return 0; }
  done
  local site
  for site in $("$PY" -c 'import site, sys; print(" ".join(site.getsitepackages() + [site.getusersitepackages()] + [p for p in sys.path if p.endswith("-packages")]))' 2>/dev/null); do
    [ -d "$site/nvidia" ] || continue
    c=$(find "$site/nvidia" -maxdepth 4 -name compute-sanitizer -type f -perm -u+x 2>/dev/null | head -n 1)
    [ -n "$c" ] && { echo "$c"; return 0; }
  done
  return 1
}

SAN=$(find_sanitizer) || SAN=""
{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 || echo "nvidia-smi: not available"
  echo "compute-sanitizer: ${SAN:-NOT FOUND}"
  [ -n "$SAN" ] && "$SAN" --version 2>&1 | tail -n 1
} >"$OUT/env.tmp" 2>&1
cat "$OUT/env.tmp"

declare -A STATUS ERRORS
# Baseline: each step once without the sanitizer (compiles and caches the kernels; finds skipped models).
for m in "${MODELS[@]}"; do
  timeout 300 "$PY" "$ONE_STEP" "$m" >"$OUT/step.tmp" 2>&1
  rc=$?
  cat "$OUT/step.tmp" >>"$OUT/baseline.log"
  line=$(grep "^one_step $m:" "$OUT/step.tmp" | tail -n 1)
  echo "baseline $m (exit $rc): ${line:-no result line; see baseline.log}"
  case "$line" in
    *": skipped: "*) STATUS[base-$m]="skipped: ${line#*: skipped: }" ;;
    *": ok: "*) STATUS[base-$m]=ok ;;
    *) STATUS[base-$m]="baseline failed (exit $rc)" ;;
  esac
done

for tool in "${TOOLS[@]}"; do
  for m in "${MODELS[@]}"; do
    key="$tool-$m"
    log="$OUT/$key.log"
    if [ "${STATUS[base-$m]}" != ok ]; then
      STATUS[$key]="${STATUS[base-$m]}"; ERRORS[$key]="-"; continue
    fi
    if [ -z "$SAN" ]; then
      STATUS[$key]="no compute-sanitizer found"; ERRORS[$key]="-"; continue
    fi
    t0=$(date +%s)
    timeout "$STEP_TIMEOUT" "$SAN" --tool "$tool" --error-exitcode 99 --print-limit 25 \
      "$PY" "$ONE_STEP" "$m" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - t0 ))
    # memcheck ends with "ERROR SUMMARY: N errors", racecheck with "RACECHECK SUMMARY: H hazards displayed (N errors, W warnings)"
    summary=$(grep -E "ERROR SUMMARY: [0-9]+ error" "$log" | tail -n 1)
    n=$(echo "$summary" | grep -oE "[0-9]+" | head -n 1)
    hazards=$(grep -E "RACECHECK SUMMARY" "$log" | tail -n 1)
    if [ -z "$summary" ] && [ -n "$hazards" ]; then
      summary="$hazards"
      n=$(echo "$hazards" | grep -oE "\(([0-9]+) error" | grep -oE "[0-9]+")
    fi
    step=$(grep "^one_step $m:" "$log" | tail -n 1)
    if [ "$rc" -eq 124 ]; then
      STATUS[$key]="timed out after ${STEP_TIMEOUT}s"
    elif [ -z "$summary" ]; then
      STATUS[$key]="sanitizer gave no summary (exit $rc): $(grep -m1 -iE "error|not supported" "$log" | cut -c1-90)"
    elif [ -z "$step" ]; then
      STATUS[$key]="step did not finish (exit $rc, ${secs}s)"
    elif [ "${n:-1}" -eq 0 ]; then
      STATUS[$key]="clean (${secs}s)"
    else
      STATUS[$key]="ERRORS (${secs}s): $(grep -m1 -E "^========= (Invalid|Error|Race|Warning|Program hit)" "$log" | cut -c11-100)"
    fi
    ERRORS[$key]="${n:--}${hazards:+ [${hazards#*SUMMARY: }]}"
  done
done

{
  cat "$OUT/env.tmp"
  echo
  printf "%-10s %-6s %-8s %s\n" tool model errors status
  for tool in "${TOOLS[@]}"; do
    for m in "${MODELS[@]}"; do
      printf "%-10s %-6s %-8s %s\n" "$tool" "$m" "${ERRORS[$tool-$m]}" "${STATUS[$tool-$m]}"
    done
  done
} >"$OUT/table.txt"
rm -f "$OUT/env.tmp" "$OUT/step.tmp"
echo
cat "$OUT/table.txt"

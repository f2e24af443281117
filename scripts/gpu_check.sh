#!/usr/bin/env bash
# GPU check of the cuda target: runs `pytest tests/gpu -m gpu` on a machine with a GPU and CuPy.
# Full logs go to $OUT (default ./out): env.txt (versions, GPU), pytest.log, junit.xml, table.txt.
# The last thing printed is a short results table (one row per test file, then the failures).
# Extra pytest arguments are passed through, e.g. scripts/gpu_check.sh -k embedding -x
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export HGC_CACHE_DIR="${HGC_CACHE_DIR:-${TMPDIR:-/tmp}/hgc_cache}"  # not under $OUT: cubins need not come back
export PYTHONDONTWRITEBYTECODE=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # examples import hgc from the tree

# Wheels carried with the working tree (no registry on the device machine) fill in missing packages.
if [ -d .wheels ]; then
  for mod in jinja2 networkx numba pytest; do
    if ! "$PY" -c "import $mod" >/dev/null 2>&1; then
      "$PY" -m pip install -q --no-index --find-links .wheels "$mod" >>"$OUT/pip.log" 2>&1 || true
    fi
  done
fi

{
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi: not available"
  "$PY" - <<'PYEOF'
import importlib, sys
print("python", sys.version.split()[0], sys.executable)
for mod in ("cupy", "numpy", "jinja2", "networkx", "numba", "pytest", "ml_dtypes"):
    try:
        m = importlib.import_module(mod)
        print(f"{mod:10s} {getattr(m, '__version__', '?')}")
    except Exception as e:
        print(f"{mod:10s} MISSING ({type(e).__name__}: {e})")
try:
    import cupy
    print("cuda runtime", cupy.cuda.runtime.runtimeGetVersion(), "devices", cupy.cuda.runtime.getDeviceCount())
    print("nvrtc", cupy.cuda.nvrtc.getVersion())
except Exception as e:
    print("cupy/cuda:", type(e).__name__, e)
PYEOF
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

"$PY" -m pytest tests/gpu -m gpu -q -rfE -p no:cacheprovider --junitxml="$OUT/junit.xml" "$@" >"$OUT/pytest.log" 2>&1
rc=$?
tail -n 40 "$OUT/pytest.log"

"$PY" - "$OUT/junit.xml" "$rc" <<'PYEOF' | tee "$OUT/table.txt"
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict

path, rc = sys.argv[1], sys.argv[2]
try:
    root = ET.parse(path).getroot()
except Exception as e:
    print(f"no junit report ({e}); pytest exit code {rc}; see pytest.log")
    sys.exit(0)
rows = defaultdict(lambda: [0, 0, 0, 0])
fails = []
for case in root.iter("testcase"):
    f = (case.get("classname") or "?").rsplit(".", 1)[-1] if "." in (case.get("classname") or "") else case.get("classname")
    mod = (case.get("classname") or "?").split(".")
    key = mod[-1] if mod[-1].startswith("test_") else ".".join(mod[-2:])
    kind = 0
    for child in case:
        if child.tag in ("failure", "error"):
            kind = 1 if child.tag == "failure" else 3
            msg = (child.get("message") or "").splitlines()[0][:150] if child.get("message") else ""
            fails.append(f"{key}::{case.get('name')}: {msg}")
        elif child.tag == "skipped":
            kind = 2
    rows[key][kind] += 1
print()
print(f"{'test file':28s} {'passed':>7s} {'failed':>7s} {'skipped':>8s} {'errors':>7s}")
tot = [0, 0, 0, 0]
for k in sorted(rows):
    p, fl, s, e = rows[k]
    tot = [a + b for a, b in zip(tot, rows[k])]
    print(f"{k:28s} {p:7d} {fl:7d} {s:8d} {e:7d}")
print(f"{'TOTAL':28s} {tot[0]:7d} {tot[1]:7d} {tot[2]:8d} {tot[3]:7d}   (pytest exit code {rc})")
for line in fails[:25]:
    print("FAIL", line)
if len(fails) > 25:
    print(f"... and {len(fails) - 25} more (see pytest.log)")
PYEOF
exit "$rc"

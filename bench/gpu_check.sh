#!/usr/bin/env bash
# One GPU check, at most 8 minutes: the pinned stack, the GPU-relevant tests on the GPU, then the
# real-shape benchmark (bench/bench_scoring.py --real), which rewrites docs/PERFORMANCE.md's section
# "Real shapes, bf16 (<card>)". With --cpu: the same benchmark at 1 layer / vocabulary 512 / short
# sequences on the CPU (CI and tests/test_realscale.py keep it working), writing the CPU-mode section.
#
#   bash bench/gpu_check.sh            # on a CUDA machine with the pinned venv (README, "GPU install")
#   bash bench/gpu_check.sh --cpu      # anywhere (extra arguments go to bench_scoring.py, e.g. --configs qwen3-0.6b)
#
# Environment: PYTHON (default .venv/bin/python), TIFKIT_PERF_OUT (default docs/PERFORMANCE.md),
# CHECK_TESTS=0 to skip the tests. Exit status: the first failing step's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${TIFKIT_PERF_OUT:-docs/PERFORMANCE.md}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
start=$(date +%s)
step() { echo "== [$(( $(date +%s) - start ))s] $*"; }

if [[ "${1:-}" == "--cpu" ]]; then
  step "CPU mode: real shapes at reduced depth"
  shift
  "$PY" bench/bench_scoring.py --real --device cpu --threads "${OMP_NUM_THREADS:-1}" --out "$OUT" "$@"
  step "done"
  exit 0
fi

step "stack"
"$PY" - <<'PY'
import sys, torch, transformers, trl, peft, accelerate
print(f"python {sys.version.split()[0]}; torch {torch.__version__} (CUDA {torch.version.cuda}); "
      f"transformers {transformers.__version__}; trl {trl.__version__}; peft {peft.__version__}; "
      f"accelerate {accelerate.__version__}")
if not torch.cuda.is_available():
    sys.exit("no CUDA device: install the CUDA build of the pinned torch (README, 'GPU install') or use --cpu")
print(torch.cuda.get_device_name(), f"{torch.cuda.get_device_properties(0).total_memory / 2**30:.0f} GiB")
if not torch.__version__.startswith("2.13.0"):
    print(f"warning: torch {torch.__version__} is not the pinned 2.13.0; numbers are reported with this version")
PY

if [[ "${CHECK_TESTS:-1}" != 0 ]]; then
  step "GPU-marked tests (pytest -m gpu)"
  timeout 150 "$PY" -m pytest -q -x -p no:cacheprovider -m gpu tests/test_realscale.py
fi

step "real-shape benchmark"
timeout 330 "$PY" bench/bench_scoring.py --real --device cuda --out "$OUT"
step "done"

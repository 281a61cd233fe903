#!/usr/bin/env bash
# The full-size benchmark on a lent GPU machine, as one command (run THERE, from the repo root, with the .whl/
# wheelhouse that benchmarks/build_wheelhouse.sh built here carried along; the machine reaches no registry).
#
#   bash benchmarks/gpu_full_size.sh                 # 60 s story, 50 steps
#   DURATION=20 STEPS=50 REPEATS=1 bash benchmarks/gpu_full_size.sh
#
# Runs benchmarks/run.py on audiostory-3b-random at full size (our classes at the released dims, random weights):
#   1. ours on the default, official fixed canvas, and the official inference's structure, same story;
#   2. ours on the opt-in sized canvas (a separate row, labelled "(sized canvas)").
# Every run records per-stage time and CUDA peak memory (max allocated) in its JSON. Results go to $OUT when set
# (the device tool brings $OUT back), else benchmarks/results/gpu/: JSONs, logs and RESULTS-gpu.md (the rows to
# copy into benchmarks/RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

RESULTS=${OUT:-benchmarks/results/gpu}
DURATION=${DURATION:-60}
STEPS=${STEPS:-50}
REPEATS=${REPEATS:-2}
mkdir -p "$RESULTS"
export PYTHONUNBUFFERED=1

# 1. the wheels the image lacks, installed beside it (never over it)
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD"
else
  echo "gpu_full_size.sh: no .whl/ wheelhouse; using the image's packages only" >&2
  export PYTHONPATH="$PWD"
fi

# 2. preflight: a missing package or no GPU is one clear line, before minutes of model building
python3 - <<'PY'
import sys

try:
    import diffusers, pyloudnorm, soundfile, torch, transformers  # noqa: F401
    import audiostory_cli.model  # noqa: F401
except ImportError as exc:
    sys.exit(f"gpu_full_size.sh: {exc}; rebuild the wheelhouse with benchmarks/build_wheelhouse.sh")
if not torch.cuda.is_available():
    sys.exit("gpu_full_size.sh: torch sees no CUDA GPU")
print(f"torch {torch.__version__}, transformers {transformers.__version__}, diffusers {diffusers.__version__}, "
      f"{torch.cuda.get_device_name()}", file=sys.stderr)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$RESULTS/gpu.txt" || true

common=(--model audiostory-3b-random --scale full --device cuda --duration "$DURATION" --steps "$STEPS"
        --repeats "$REPEATS" --no-startup --out "$RESULTS" --results-md "$RESULTS/RESULTS-gpu.md")

# 3. fixed canvas (the default, as the official inference), ours and the official structure
python3 benchmarks/run.py "${common[@]}" --baseline-repeats 1 2>&1 | tee "$RESULTS/fixed.log"
# 4. sized canvas (the opt-in), ours only
python3 benchmarks/run.py "${common[@]}" --canvas sized --no-baseline 2>&1 | tee "$RESULTS/sized.log"
echo "results in $RESULTS/" >&2

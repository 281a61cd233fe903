#!/usr/bin/env bash
# Build the wheelhouse the lent GPU machine needs (run HERE, where pip reaches a registry; the GPU machine reaches
# none). It holds only what that machine's image lacks or has at another version than pyproject.toml pins:
# its image already has torch, torchaudio, accelerate, peft, safetensors, numpy, scipy, pyyaml, rich, typer
# (see the device notes), so those are not fetched. Output: .whl/ (ignored by git), about 25 MB.
#
#   bash benchmarks/build_wheelhouse.sh              # fetch into .whl/
#   bash benchmarks/build_wheelhouse.sh --dry-run    # print what would be fetched, fetch nothing
#   bash benchmarks/build_wheelhouse.sh --only pydub # fetch one package (a quick check of the set-up)
#
# WHEELHOUSE=dir changes the folder; GPU_PYTHON=3.12 is the GPU image's Python. Then run
# benchmarks/gpu_full_size.sh there with .whl carried along (benchmarks/RESULTS.md, "Full size on a GPU").
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELHOUSE=${WHEELHOUSE:-.whl}
GPU_PYTHON=${GPU_PYTHON:-3.12}
PYTHON=${PYTHON:-python3}
DRY_RUN=0
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1 ;;
    --only) ONLY="$2"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build_wheelhouse.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# pinned in pyproject.toml, missing from the GPU image or at another version there
PINNED=(diffusers transformers tokenizers huggingface-hub soundfile pyloudnorm pydub)
# their requirements the image lacks, at the versions of this environment
EXTRA=(cffi pycparser importlib-metadata)

specs=$("$PYTHON" - "${PINNED[@]}" -- "${EXTRA[@]}" <<'PY'
import re
import sys
import tomllib
from importlib.metadata import PackageNotFoundError, version

args = sys.argv[1:]
split = args.index("--")
pinned, extra = args[:split], args[split + 1:]
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
pins = dict(re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", d).groups() for d in deps)
norm = {k.lower().replace("_", "-"): v for k, v in pins.items()}
for name in pinned:
    if name not in norm:
        sys.exit(f"build_wheelhouse.sh: {name} is not pinned in pyproject.toml")
    print(f"{name}=={norm[name]}")
for name in extra:
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        sys.exit(f"build_wheelhouse.sh: {name} is not installed here; install the project's environment first")
PY
)

if [ -n "$ONLY" ]; then
  specs=$(printf '%s\n' $specs | grep -i "^${ONLY}==" || true)
  [ -n "$specs" ] || { echo "build_wheelhouse.sh: --only $ONLY is not one of the wheelhouse packages" >&2; exit 2; }
fi

platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
           manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
cmd=("$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "$GPU_PYTHON" --implementation cp
     "${platforms[@]}" -d "$WHEELHOUSE")

if [ "$DRY_RUN" = 1 ]; then
  echo "would fetch into $WHEELHOUSE/ (Python $GPU_PYTHON, manylinux x86_64):"
  printf '  %s\n' $specs
  echo "with: ${cmd[*]} <package==version>"
  exit 0
fi
mkdir -p "$WHEELHOUSE"
for spec in $specs; do
  "${cmd[@]}" "$spec"
done
echo "wheelhouse ready: $(ls "$WHEELHOUSE"/*.whl | wc -l) wheels, $(du -sh "$WHEELHOUSE" | cut -f1) in $WHEELHOUSE/"

#!/usr/bin/env bash
# The whole GPU check in one run (about 5 minutes on one H100/H200), for a session that is lent a GPU.
#
#   bash benchmarks/gpu_check.sh            # from the repository root
#
# Results go to $OUT (or ./gpu_check/) as they come, so a timeout keeps what finished:
#   gpu_check.jsonl   one JSON line per measurement (each benchmark's last line, with a "label")
#   upfirdn2d.jsonl   the upfirdn2d microbenchmark, one line per call shape and implementation
#   pytest_gpu.txt    the CUDA tests
#   stderr.txt        everything the scripts printed on stderr
#
# It runs the package from a copy of the source tree (no install needed, so it also works on a machine
# without dlib: alignment is not used here) and builds the CUDA ops once for the GPU present.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_check}"
mkdir -p "$OUT"
LOG="$OUT/gpu_check.jsonl"
ERR="$OUT/stderr.txt"
export PYTHONUNBUFFERED=1 JOJOGAN_HOME="${JOJOGAN_HOME:-/tmp/jojogan_home}"
if [[ -z "${TORCH_CUDA_ARCH_LIST:-}" ]]; then
  TORCH_CUDA_ARCH_LIST="$(python3 -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
  export TORCH_CUDA_ARCH_LIST
fi

# The package from this tree, laid out as installed (jojogan.stylegan2 is ./stylegan2, ...).
SITE="$(mktemp -d)"
mkdir -p "$SITE/jojogan"
cp -r jojogan/. "$SITE/jojogan/"
for sub in stylegan2 inversion op; do cp -r "$sub" "$SITE/jojogan/$sub"; done
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

stamp() { echo "== $(date +%T) $*" | tee -a "$ERR" >&2; }

# bench LABEL TIMEOUT SCRIPT ARGS...: run one benchmark, keep its JSON line under a label.
bench() {
  local label="$1" limit="$2"
  shift 2
  stamp "$label"
  local line
  line="$(timeout "$limit" python3 "$@" --json 2>>"$ERR" | tail -n 1)"
  if [[ "$line" == "{"* ]]; then
    python3 -c 'import json, sys; print(json.dumps({"label": sys.argv[1], **json.loads(sys.argv[2])}))' \
      "$label" "$line" >>"$LOG"
  else
    echo "{\"label\": \"$label\", \"failed\": true}" >>"$LOG"
  fi
}

stamp "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader >>"$ERR" 2>&1
python3 -c 'import json, torch; print(json.dumps({"label": "machine", "torch": torch.__version__,
  "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0)}))' >>"$LOG"

stamp "build the CUDA ops"
REPO="$PWD"
# From another folder: the checkout's own jojogan/ (which lacks op/ and the rest) must not shadow the copy.
(cd "$SITE" && python3 -c 'from jojogan.op import _build; _build.load_extension()') >>"$ERR" 2>&1 ||
  stamp "BUILD FAILED"

stamp "CUDA tests"
(cd "$SITE" && timeout 150 python3 -m pytest -q -p no:cacheprovider --rootdir "$REPO" \
  "$REPO/tests/test_ops.py" "$REPO/tests/test_gpu.py" -k "cuda or gpu") >"$OUT/pytest_gpu.txt" 2>&1
tail -n 3 "$OUT/pytest_gpu.txt" >&2

stamp "upfirdn2d microbenchmark"
timeout 90 python3 benchmarks/upfirdn2d_speed.py --size 1024 --json >"$OUT/upfirdn2d.jsonl" 2>>"$ERR"
tail -n 1 "$OUT/upfirdn2d.jsonl" >>"$LOG"

FT=(benchmarks/finetune_speed.py --device cuda --no-flops)
# Ablation at 1024 px, one lever added per row (tf32: the GPU default before this work).
bench "1024 before (generic upfirdn2d, foreach adam, 2 syncs)" 60 "${FT[@]}" --iterations 20 --precision tf32 --without small-upfirdn2d,fused-adam,one-sync
bench "1024 + small upfirdn2d" 60 "${FT[@]}" --iterations 20 --precision tf32 --without fused-adam,one-sync
bench "1024 + fused adam + one sync (all levers, tf32)" 60 "${FT[@]}" --iterations 20 --precision tf32
bench "1024 all levers + cudnn autotune (tf32)" 60 "${FT[@]}" --iterations 20 --precision tf32 --cudnn-autotune
bench "1024 all levers, strict fp32" 60 "${FT[@]}" --iterations 20 --precision fp32
bench "1024 all levers, bf16" 60 "${FT[@]}" --iterations 20 --precision bf16
bench "1024 original loop (our kernels)" 60 "${FT[@]}" --iterations 20 --baseline
bench "256 all levers (tf32)" 60 "${FT[@]}" --size 256 --iterations 20 --precision tf32
bench "256 original loop" 60 "${FT[@]}" --size 256 --iterations 20 --baseline
bench "1024 16 refs, default micro-batch (tf32)" 90 "${FT[@]}" --references 16 --iterations 4 --precision tf32
bench "1024 16 refs, micro-batch 4 (tf32)" 90 "${FT[@]}" --references 16 --iterations 4 --micro-batch 4 --precision tf32
bench "1024 16 refs, micro-batch 2 (tf32)" 90 "${FT[@]}" --references 16 --iterations 4 --micro-batch 2 --precision tf32
bench "1024 16 refs, default micro-batch (bf16)" 90 "${FT[@]}" --references 16 --iterations 4 --precision bf16
bench "1024 16 refs, original loop" 90 "${FT[@]}" --references 16 --iterations 4 --baseline

ST=(benchmarks/stylize_speed.py --device cuda --size 1024 --alpha 1.0 --repeats 10)
bench "stylize batch 1 (tf32)" 60 "${ST[@]}" --batch 1 --precision tf32
bench "stylize batch 16 (tf32)" 60 "${ST[@]}" --batch 16 --precision tf32
bench "stylize batch 1 (bf16)" 60 "${ST[@]}" --batch 1 --precision bf16
bench "stylize batch 16 (bf16)" 60 "${ST[@]}" --batch 16 --precision bf16

bench "precision check 1024, 30 steps" 120 benchmarks/precision_check.py --device cuda --size 1024 --steps 30
stamp "done"

#!/usr/bin/env bash
# Everything issue 20's "Done when" needs from a GPU, in ONE device call of under 8 minutes on an H200:
#   one process, one resident CREMA-D-shaped dataset, configurations interleaved epoch by epoch (drift cancelled):
#   eager:          floor, joint, dus-h (exact, size buckets of 8, one-step lag, both), bss-l (+ previous_epoch),
#                   D&R amortised over H = 20; profile of joint vs the floor, host syncs per step of the DUS variants
#   compiled:       the same under torch.compile(reduce-overhead): compiled floor, joint, dus-h[lag1], dus-h[q8],
#                   dus-h[q8,lag1], bss-l[previous_epoch], D&R; profile of compiled joint vs the compiled floor
#   eager-rows, compiled-rows:  joint and every other registered method (mmbalance list), 1,024 clips per epoch
# Groups run in that order, each by its share of the time budget (--budget-s); what does not fit is named in the
# output as not measured. Results: $OUT/gpu_session.json (device, torch, CUDA and date inside), the log, the
# device state, and BENCHMARKS.md with the "h200" section rendered from the JSON.
#   bash benchmarks/gpu_session.sh            # on the GPU (run from the repository root)
#   bash benchmarks/gpu_session.sh --tiny     # the same script at smoke-test sizes (CPU, to test it)
#   bash benchmarks/gpu_session.sh cremad|equivalence   # older pending checks, one device call each: the real
#                                             # on-disk CREMA-D layout; fast vs plain path accuracy
# After the session: copy $OUT/gpu_session.json to benchmarks/results_h200.json and run
#   python benchmarks/render_benchmarks.py benchmarks/results_h200.json --key h200
set -euo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-results}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
if [[ ${1:-} == cremad ]]; then
  $PY benchmarks/run_benchmarks.py --layout cremad --rounds 3 --methods "dus-h,dus-h[lag1]" --json "$OUT/cremad.json"
  exit
elif [[ ${1:-} == equivalence ]]; then
  $PY benchmarks/check_fast_path.py --json "$OUT/equivalence.json"
  exit
elif [[ ${1:-} == --tiny ]]; then
  # smoke-test sizes: every group, two methods in the rows groups, no time budget
  ARGS=(--tiny --rows "ogm-ge,joint-aux" --json "$OUT/gpu_session.json")
else
  # 3,200 clips (50 steps) per epoch in the main groups: per-step ratios as at 6,698, more rounds in the time
  ARGS=(--n 3200 --rows-n 1024 --rounds 5 --budget-s 400 --rows all --json "$OUT/gpu_session.json")
fi
{
  date -u +"date %Y-%m-%dT%H:%M:%SZ"
  $PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,temperature.gpu,power.draw,utilization.gpu \
    --format=csv 2>/dev/null || echo "nvidia-smi: not available"
} > "$OUT/device.txt"
cat "$OUT/device.txt"
$PY benchmarks/run_benchmarks.py --groups eager,compiled,eager-rows,compiled-rows --methods seeds \
  --compiled-methods compiled-seeds --profile "${ARGS[@]}" 2>&1 | tee "$OUT/gpu_session.log"
cp BENCHMARKS.md "$OUT/BENCHMARKS.md"
$PY benchmarks/render_benchmarks.py "$OUT/gpu_session.json" --key h200 --md "$OUT/BENCHMARKS.md"
nvidia-smi --query-gpu=clocks.sm,temperature.gpu,power.draw --format=csv,noheader >> "$OUT/device.txt" 2>/dev/null || true
echo "results in $OUT: gpu_session.json, gpu_session.log, device.txt, BENCHMARKS.md (section h200)"

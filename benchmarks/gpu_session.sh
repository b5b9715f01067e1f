#!/usr/bin/env bash
# The GPU measurements of BENCHMARKS.md, one part per device call (each fits the 10-minute limit of a call).
#   bash benchmarks/gpu_session.sh eager|compiled|compiled-plugins|cremad|equivalence|all   (results as JSON under ${OUT:-results})
# Run from the repository root; record the device printed on the first line of each part with its figures.
set -euo pipefail
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-results}
mkdir -p "$OUT"
part=${1:-all}
run() { echo "== $*"; python3 "$@"; }
if [[ $part == eager || $part == all ]]; then
  # (a) eager floor, (b) joint, (c) D&R (every epoch with / without re-initialisation, every 2nd epoch), BSS-L (both
  # score sources), DUS-H (exact / size buckets), joint again
  run benchmarks/run_benchmarks.py --epochs 5 \
    --methods "diagnose-relearn,diagnose-relearn[monitor],diagnose-relearn[H2],bss-l,bss-l[previous_epoch],dus-h,dus-h[q8]" \
    --json "$OUT/eager.json"
fi
if [[ $part == compiled || $part == all ]]; then
  # the same under torch.compile(mode="reduce-overhead"): compiled floor, joint, DUS-H exact vs size buckets of 8
  run benchmarks/run_benchmarks.py --epochs 4 --compile --naive-clips 0 \
    --methods "dus-h,dus-h[q8]" --json "$OUT/compiled.json"
fi
if [[ $part == compiled-plugins || $part == all ]]; then
  # (split from "compiled" so that each part stays within one 10-minute device call: every run compiles afresh)
  run benchmarks/run_benchmarks.py --epochs 4 --compile --naive-clips 0 \
    --methods "diagnose-relearn,bss-l" --json "$OUT/compiled_plugins.json"
fi
if [[ $part == cremad || $part == all ]]; then
  # (b)/(c) from the real on-disk layout: raw CREMA-D tree -> mmbalance prepare -> cremad loader + frame cache
  run benchmarks/run_benchmarks.py --layout cremad --epochs 3 --naive-clips 0 --methods "dus-h" \
    --json "$OUT/cremad.json"
fi
if [[ $part == equivalence || $part == all ]]; then
  run benchmarks/check_fast_path.py --json "$OUT/equivalence.json"
fi

#!/usr/bin/env bash
# The GPU check of training, one run of at most ~8 minutes on a lent GPU machine.
# There: no diffusers, datasets or MiniLM, no network, 64 MiB upload. Prepare here with
# `bash ../shared/gpu/pack.sh` (→ .gpu/, see ../shared/gpu/README.md), then run on the machine:
#   source .gpu/bin/device-env.sh && bash benchmarks/gpu_check.sh "$OUT"
# It runs
#   1. the exact-resume check with EMA and bf16 on CUDA (benchmarks/resume_check.py: 100 steps, SIGKILL after
#      checkpoint-50, resume, weights compared with an uninterrupted run);
#   2. benchmarks/bench_training.py loop for tiny-32, glyffuser-64 and glyffuser-128 (samples/s, the loop
#      overhead against a bare forward+backward+AdamW step, GPU utilisation, host time per phase);
#   2b. the same for tiny-32 with --compile (torch.compile; its warm-up time reported);
#   3. bench_training.py ema: the EMA update as a Python loop against foreach (the script's on a GPU).
# Everything is printed and written to OUT (default gpu-check/). Tested on CPU with DEVICE=cpu (tiny sizes):
#   DEVICE=cpu DATA=data/glyphs-32 bash benchmarks/gpu_check.sh /tmp/gpu-check
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-gpu-check}; mkdir -p "$OUT"
DATA=${DATA:-.gpu/data/glyphs-32}
DEVICE=${DEVICE:-cuda}
PY=${PY:-python3}
if [ "$DEVICE" = cuda ]; then
  CONFIG=gpu; MP=bf16; STEPS=100; CKPT=50; RB=256; LOOP_STEPS=10; ROUNDS=1
  PRESETS="tiny-32:256 glyffuser-64:128 glyffuser-128:64"; EMA_PRESETS="tiny-32 glyffuser-64 glyffuser-128"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
else
  CONFIG=cpu; MP=no; STEPS=6; CKPT=3; RB=4; LOOP_STEPS=2; ROUNDS=1
  PRESETS="micro:4"; EMA_PRESETS="micro tiny-32"
fi
status=0
echo "== 1. exact resume ($DEVICE, $MP, EMA)" | tee "$OUT/resume.txt"
timeout 240 "$PY" benchmarks/resume_check.py --dataset "$DATA" --config "$CONFIG" --steps "$STEPS" \
  --checkpoint "$CKPT" --batch "$RB" --mixed-precision "$MP" --work "$OUT/resume-work" 2>&1 | tee -a "$OUT/resume.txt" \
  || status=1
for spec in $PRESETS; do
  preset=${spec%%:*}; batch=${spec##*:}
  echo "== 2. training loop: $preset, batch $batch, $MP" | tee -a "$OUT/loop.txt"
  timeout 150 "$PY" benchmarks/bench_training.py loop --preset "$preset" --batch "$batch" --device "$DEVICE" \
    --mixed-precision "$MP" --dataset "$DATA" --chars 4096 --steps "$LOOP_STEPS" --rounds "$ROUNDS" \
    --work "$OUT/loop-work" 2>&1 | grep -v "^USDT\|Saving the dataset" | tee -a "$OUT/loop.txt" || status=1
done
if [ "$DEVICE" = cuda ]; then
  echo "== 2b. training loop: tiny-32, batch 256, $MP, --compile (warm-up reported)" | tee -a "$OUT/loop.txt"
  timeout 150 "$PY" benchmarks/bench_training.py loop --preset tiny-32 --batch 256 --device cuda --compile \
    --mixed-precision "$MP" --dataset "$DATA" --chars 4096 --steps "$LOOP_STEPS" --rounds 1 --no-profile \
    --work "$OUT/loop-work" 2>&1 | grep -v "^USDT\|Saving the dataset" | tee -a "$OUT/loop.txt" || status=1
fi
echo "== 3. EMA update: per-parameter loop vs foreach ($DEVICE)" | tee "$OUT/ema.txt"
timeout 60 "$PY" benchmarks/bench_training.py ema --device "$DEVICE" --preset $EMA_PRESETS 2>&1 \
  | grep -v "^\[transformers\]" | tee -a "$OUT/ema.txt" || status=1
rm -rf "$OUT/resume-work" "$OUT/loop-work"  # checkpoints and pipelines: not worth bringing back
exit $status

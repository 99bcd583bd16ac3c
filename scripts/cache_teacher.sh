#!/usr/bin/env bash
# Run Real-ESRGAN x4plus (the crisp model's teacher, BSD-3-Clause, ../shared/data/weights/realesrgan)
# over degraded training crops, in shards under $VIDSR_TEACHER_CACHE (default
# ~/.cache/vidsr/teacher; see vidsr/train/teacher_cache.py). Rerun it to resume: shards already
# made are kept. Long: start it in the background,
#   setsid nohup nice -n 19 scripts/cache_teacher.sh > ~/.cache/vidsr/teacher.log 2>&1 &
# Data: the licensed training clips and images of ../shared/data (never the test clips nor
# footage of them: scripts/training_data.sh); the LR is made by the archival-x4 preset's
# degradation. Extra arguments go to the builder
# (e.g. --shards 100).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${VIDSR_TRAIN_DATA:-$ROOT/../shared/data}"
OUT="${VIDSR_TEACHER_CACHE:-$HOME/.cache/vidsr/teacher}"
PYTHON="${PYTHON:-${VIDSR_VENV:-$ROOT/.venv}/bin/python}"
source "$ROOT/scripts/training_data.sh"
"$PYTHON" -m vidsr.train.teacher_cache \
    --teacher "$DATA/weights/realesrgan/RealESRGAN_x4plus.pth" --preset archival-x4 \
    "${TRAIN_DATA[@]}" --out "$OUT" --shards 2000 "$@"

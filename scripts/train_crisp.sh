#!/usr/bin/env bash
# Train the crisp x4 model on the teacher cache (scripts/cache_teacher.sh builds it) into
# $VIDSR_TRAIN_RUNS/crisp-x4 (default ~/.cache/vidsr/train/crisp-x4). Rerun it to resume from the
# newest checkpoint; a finished run is left as it is. Long: start it in the background,
#   setsid nohup nice -n 19 scripts/train_crisp.sh > ~/.cache/vidsr/train/crisp-x4.log 2>&1 &
# The cache is the newest folder under $VIDSR_TEACHER_CACHE (default ~/.cache/vidsr/teacher).
# Extra arguments go to `vidsr train` (e.g. --set train.total_steps=200).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHES="${VIDSR_TEACHER_CACHE:-$HOME/.cache/vidsr/teacher}"
RUNS="${VIDSR_TRAIN_RUNS:-$HOME/.cache/vidsr/train}"
PYTHON="${PYTHON:-${VIDSR_VENV:-$ROOT/.venv}/bin/python}"
cache="$(ls -td "$CACHES"/teacher-*/ 2>/dev/null | head -n 1)"
if [[ -z "$cache" ]]; then
    echo "train_crisp: no teacher cache under $CACHES; run scripts/cache_teacher.sh first" >&2
    exit 1
fi
run="$RUNS/crisp-x4"
resume=()
if compgen -G "$run/checkpoints/[0-9]*" >/dev/null; then
    resume=(--resume)
fi
echo "train_crisp: $cache into $run ${resume[*]}" >&2
"$PYTHON" -m vidsr train --preset crisp-x4 --data "$cache" --out "$run" "${resume[@]}" "$@"

#!/usr/bin/env bash
# Train the temporal archival models, x4 then x2, into $VIDSR_TRAIN_RUNS (default
# ~/.cache/vidsr/train/archival-temporal-x{4,2}). Rerun it to resume: each run continues from
# its newest checkpoint, and a finished run is left as it is. Long: start it in the background,
#   setsid nohup nice -n 19 scripts/train_temporal.sh > ~/.cache/vidsr/train/archival-temporal.log 2>&1 &
# Data: the licensed training clips and images of ../shared/data (never the test clips nor
# footage of them: scripts/training_data.sh).
# Extra arguments go to every `vidsr train` (e.g. --set train.total_steps=200).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${VIDSR_TRAIN_DATA:-$ROOT/../shared/data}"
RUNS="${VIDSR_TRAIN_RUNS:-$HOME/.cache/vidsr/train}"
PYTHON="${PYTHON:-${VIDSR_VENV:-$ROOT/.venv}/bin/python}"
source "$ROOT/scripts/training_data.sh"
for scale in ${VIDSR_TRAIN_SCALES:-4 2}; do
    run="$RUNS/archival-temporal-x$scale"
    resume=()
    if compgen -G "$run/checkpoints/[0-9]*" >/dev/null; then
        resume=(--resume)
    fi
    echo "train_temporal: x$scale into $run ${resume[*]}" >&2
    "$PYTHON" -m vidsr train --preset "archival-temporal-x$scale" \
        "${TRAIN_DATA[@]}" --out "$run" "${resume[@]}" "$@"
done

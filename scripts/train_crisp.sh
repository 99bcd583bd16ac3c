#!/usr/bin/env bash
# Train a stage of the crisp model on the teacher cache (scripts/cache_teacher.sh builds it):
#   scripts/train_crisp.sh x4       distillation, x4 (preset crisp-x4)
#   scripts/train_crisp.sh x2       distillation, x2 (crisp-x2: the x4 teacher's output halved)
#   scripts/train_crisp.sh x4-gan   ESRGAN's GAN recipe from the x4 distillation's newest EMA
#                                   weights (crisp-x4-gan; the teacher's features as perceptual)
#   scripts/train_crisp.sh wide-x4  the next recipe: Real-ESRGAN's compact video size from the
#                                   realesr-animevideov3 weights (crisp-wide-x4; its PSNR
#                                   partner is archival-wide-x4, trained on images)
# into $VIDSR_TRAIN_RUNS/crisp-STAGE (default ~/.cache/vidsr/train/crisp-STAGE). Rerun it to
# resume from the newest checkpoint; a finished run is left as it is. Long: start it in the
# background,
#   setsid nohup nice -n 19 scripts/train_crisp.sh x4 > ~/.cache/vidsr/train/crisp-x4.log 2>&1 &
# The cache is the newest folder under $VIDSR_TEACHER_CACHE (default ~/.cache/vidsr/teacher).
# Extra arguments go to `vidsr train` (e.g. --set train.total_steps=200).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA="${VIDSR_TRAIN_DATA:-$ROOT/../shared/data}"
CACHES="${VIDSR_TEACHER_CACHE:-$HOME/.cache/vidsr/teacher}"
RUNS="${VIDSR_TRAIN_RUNS:-$HOME/.cache/vidsr/train}"
PYTHON="${PYTHON:-${VIDSR_VENV:-$ROOT/.venv}/bin/python}"
stage="${1:-}"
case "$stage" in
    x4|x2|x4-gan|wide-x4) shift ;;
    *) echo "usage: train_crisp.sh x4|x2|x4-gan|wide-x4 [vidsr train options]" >&2; exit 2 ;;
esac
cache="$(ls -td "$CACHES"/teacher-*/ 2>/dev/null | head -n 1)"
if [[ -z "$cache" ]]; then
    echo "train_crisp: no teacher cache under $CACHES; run scripts/cache_teacher.sh first" >&2
    exit 1
fi
run="$RUNS/crisp-$stage"
extra=()
if [[ "$stage" == x4-gan ]]; then
    first="$(ls -d "$RUNS"/crisp-x4/checkpoints/[0-9]* 2>/dev/null | sort | tail -n 1)"
    if [[ -z "$first" ]]; then
        echo "train_crisp: the GAN stage starts from crisp-x4's weights; train x4 first" >&2
        exit 1
    fi
    extra=(--set "model.init=$first/params_ema.safetensors"
           --set "loss.teacher_weights=$DATA/weights/realesrgan/RealESRGAN_x4plus.pth")
fi
if compgen -G "$run/checkpoints/[0-9]*" >/dev/null; then
    extra+=(--resume)
fi
echo "train_crisp: $cache into $run ${extra[*]}" >&2
"$PYTHON" -m vidsr train --preset "crisp-$stage" --data "$cache" --out "$run" "${extra[@]}" "$@"

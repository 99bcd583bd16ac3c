#!/usr/bin/env bash
# One command: set up, then upscale the bundled sample clip x2 with vidsr's own bundled model, offline.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
mkdir -p "$ROOT/out"
"${VIDSR_VENV:-$ROOT/.venv}/bin/vidsr" "$ROOT/vidsr/samples/bbb_2s.mp4" "$ROOT/out/demo_x2.mp4" \
    --model compact --scale 2 --overwrite "$@"
echo "demo: wrote $ROOT/out/demo_x2.mp4"

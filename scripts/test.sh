#!/usr/bin/env bash
# One command: set up (with the test extras, the VapourSynth, QTGMC, OpenVINO and Ray extras
# they test, and Debian's ffmpeg), then run the test suite.
# Extra arguments go to pytest (e.g. --run-slow, -k colour).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VIDSR_EXTRAS=dev,vapoursynth,qtgmc,openvino,ray bash "$ROOT/scripts/setup.sh"
# The --ffmpeg backend is tested against a real system ffmpeg.
if ! command -v ffmpeg >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "vidsr test: installing Debian's ffmpeg" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
        || echo "vidsr test: could not install ffmpeg; its tests will be skipped" >&2
fi
cd "$ROOT"
exec "${VIDSR_VENV:-$ROOT/.venv}/bin/python" -m pytest "$@"

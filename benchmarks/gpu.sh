#!/usr/bin/env bash
# The CUDA checks and figures in one command, for any machine with a CUDA device:
#   1. the gpu-marked tests (in-flight batches vs the CPU, pinned buffer reuse, fp16
#      overflow redone in fp32, several devices, cuDNN setting, resizing, CUDA training);
#   2. an end-to-end upscale of the bundled clip on CUDA;
#   3. vidsr bench of the full RRDB x4 (random weights) on the bundled 640x360 clip in
#      fp16 (issue #4's GPU target: pipeline >= 0.9x model-only), bf16 and fp32, with 1 and
#      2 batches in flight, and espcn x2 in fp16.
#
#   benchmarks/gpu.sh [OUTDIR]         (default OUTDIR: benchmarks/results/gpu)
#
# Runs from a checkout with the Python in $PYTHON (default python3), which needs torch with
# CUDA and vidsr's other dependencies; vidsr itself is taken from the checkout. The figures go
# to OUTDIR as JSON and text; copy them into benchmarks/RESULTS.md with the device named.
# DEVICE=cpu runs the same steps on the CPU (to check the script itself).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUTDIR="${1:-$ROOT/benchmarks/results/gpu}"
PY="${PYTHON:-python3}"
DEVICE="${DEVICE:-cuda}"
CLIP="$ROOT/vidsr/samples/bbb_2s.mp4"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
mkdir -p "$OUTDIR"
cd "$ROOT" || exit 1
failed=0

step() {  # step NAME COMMAND...: run, keep its output in OUTDIR/NAME.txt, go on if it fails
    local name="$1"
    shift
    echo "== $name: $*"
    if ! "$@" 2>&1 | tee "$OUTDIR/$name.txt"; then
        echo "== $name FAILED"
        failed=1
    fi
}

step device "$PY" -c "import torch, platform
print('torch', torch.__version__, 'python', platform.python_version())
print('cuda', torch.cuda.is_available(), [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])"
if [ "$DEVICE" = cuda ]; then
    step gpu_tests "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs tests
fi
step upscale "$PY" -m vidsr "$CLIP" "$OUTDIR/bbb_x2.mkv" --model compact --scale 2 \
    --device "$DEVICE" --overwrite --no-progress
rm -f "$OUTDIR/bbb_x2.mkv"

# x264 at 2560x1440 must not be what limits the pipeline: veryfast keeps it ahead of the GPU.
bench() {  # bench NAME FLAGS...
    local name="$1"
    shift
    step "$name" "$PY" -m vidsr bench "$CLIP" --device "$DEVICE" --encoder-preset veryfast \
        --repeats 3 --no-serial --json "$OUTDIR/$name.json" "$@"
}
if [ "$DEVICE" = cuda ]; then
    for precision in fp16 bf16 fp32; do
        bench "rrdb_x4_640x360_${precision}_b4" --model realesrgan-x4plus --random-init \
            --precision "$precision" --batch-size 4
    done
    bench rrdb_x4_640x360_fp16_b4_inflight1 --model realesrgan-x4plus --random-init \
        --precision fp16 --batch-size 4 --in-flight 1
    bench rrdb_x4_640x360_fp16_b1 --model realesrgan-x4plus --random-init \
        --precision fp16 --batch-size 1
    # With the serial loops: the Real-ESRGAN-style baseline on the same GPU.
    step espcn_x2_640x360_fp16 "$PY" -m vidsr bench "$CLIP" --device "$DEVICE" --model espcn \
        --scale 2 --precision fp16 --batch-size 8 --repeats 3 \
        --json "$OUTDIR/espcn_x2_640x360_fp16.json"
else
    bench rrdb_x4_cpu_check --model realesrgan-x4plus --random-init --precision bf16 \
        --batch-size 1 --frames 2 --crop 32 --repeats 1
fi
echo "== done; figures in $OUTDIR"
exit "$failed"

#!/usr/bin/env bash
# GPU check for a host with Python 3.10+ and PyTorch (CUDA) only: no network, no onnx, no TensorRT.
#
#   benchmarks/gpu_check.sh OUT_DIR [extra gpu_check.py options]
#
# Benches torch CUDA FP32 vs FP16 vs FP16+channels_last+CUDA graphs for resnet50, vgg16,
# googlenet and mobilenet_v2 at batch 1, 8, 64, 256; prints a table and writes
# OUT_DIR/gpu_check.json (readable by `deploykit report`), OUT_DIR/gpu_check.md and
# OUT_DIR/nvidia-smi.txt. Bounded: the Python part stops starting configurations after
# GPU_CHECK_BUDGET seconds (default 420) and a hard timeout kills it at GPU_CHECK_TIMEOUT
# (default 480 s = 8 minutes); the JSON is rewritten after every configuration, so a killed
# run still leaves what it measured.
set -euo pipefail

OUT=${1:?usage: benchmarks/gpu_check.sh OUT_DIR [gpu_check.py options]}
shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
TIMEOUT=${GPU_CHECK_TIMEOUT:-480}
BUDGET=${GPU_CHECK_BUDGET:-420}

mkdir -p "$OUT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# Keep CPU-side threads from fighting the launch thread on many-core hosts.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}

{ nvidia-smi || echo "nvidia-smi not available"; } > "$OUT/nvidia-smi.txt" 2>&1
"$PYTHON" -c "import torch, sys; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'gpu', torch.cuda.get_device_name(0) if torch.cuda.is_available() else None, 'python', sys.version.split()[0])"

status=0
timeout --kill-after=15 "$TIMEOUT" "$PYTHON" "$ROOT/benchmarks/gpu_check.py" "$OUT" \
    --budget-seconds "$BUDGET" "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "gpu_check: hit the ${TIMEOUT}s limit; partial results are in $OUT/gpu_check.json" >&2
fi
exit "$status"

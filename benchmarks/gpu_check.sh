#!/usr/bin/env bash
# GPU check for a host with Python 3.10+ and PyTorch (CUDA) only: no network, no onnx, no TensorRT.
#
#   benchmarks/gpu_check.sh OUT_DIR [extra gpu_check.py options]
#
# Benches the torch CUDA runner in FP32, TF32, FP16 and FP16+channels_last, each eager and
# with CUDA graphs, for resnet50, mobilenet_v2 and vgg16 at batch 1, 8, 64, 256: the forward
# timed with CUDA events on device-resident input, H2D / D2H copies from pinned memory apart,
# GPU memory as weights / activations / I/O. Prints a table and writes
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
# The full check; options given to this script come after and win.
timeout --kill-after=15 "$TIMEOUT" "$PYTHON" "$ROOT/benchmarks/gpu_check.py" "$OUT" \
    --models resnet50,mobilenet_v2,vgg16 --batches 1,8,64,256 \
    --variants fp32,tf32,fp16,fp16+cl,fp32+graphs,tf32+graphs,fp16+graphs,fp16+cl+graphs \
    --seconds 0.5 --max-seconds 2 --budget-seconds "$BUDGET" "$@" || status=$?
if [ "$status" -eq 124 ] || [ "$status" -eq 137 ]; then
    echo "gpu_check: hit the ${TIMEOUT}s limit; partial results are in $OUT/gpu_check.json" >&2
fi
exit "$status"

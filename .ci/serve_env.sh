#!/usr/bin/env bash
# Create (or refresh) .venv-serve: the separate Python environment the local Triton server runs in.
#
# Why separate: PyTriton (nvidia-pytriton, which bundles a real tritonserver) pins numpy<2, while
# the main environment needs numpy 2 (torch, onnx, modelopt). `deploykit serve` runs in the main
# environment and launches `python -m deploykit.serve.process` with this environment's interpreter.
# The server imports only torch-free deploykit modules, numpy<2, onnxruntime and pytriton.
#
# Idempotent: does nothing when the environment already matches this script (a stamp file holds
# the script's hash); set DEPLOYKIT_SERVE_ENV to use another folder, PYTHON to pick the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_DIR="${DEPLOYKIT_SERVE_ENV:-.venv-serve}"
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Pinned: the server's whole dependency set (numpy<2 because of PyTriton).
REQUIREMENTS=(
    "nvidia-pytriton==0.7.0"
    "numpy>=1.26,<2"
    "onnxruntime>=1.20"
    "click>=8.1"
    "rich>=13"
)
STAMP="$ENV_DIR/.deploykit-serve-env"
WANT="$(cat "$0" | sha256sum | cut -d' ' -f1)"

if [[ -x "$ENV_DIR/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]] \
    && "$ENV_DIR/bin/python" -c "import pytriton, onnxruntime, numpy, deploykit; assert numpy.__version__ < '2'" 2>/dev/null; then
    echo "serve_env: $ENV_DIR is up to date"
    exit 0
fi

if [[ ! -x "$ENV_DIR/bin/python" ]]; then
    "$PYTHON" -m venv "$ENV_DIR"
fi
"$ENV_DIR/bin/python" -m pip install -q --upgrade pip
"$ENV_DIR/bin/python" -m pip install -q "${REQUIREMENTS[@]}"
# deploykit itself without its dependencies (no torch: the server never imports it).
"$ENV_DIR/bin/python" -m pip install -q --no-deps -e .
"$ENV_DIR/bin/python" -c "import pytriton, onnxruntime, numpy; print('serve_env: numpy', numpy.__version__, '| onnxruntime', onnxruntime.__version__, '| pytriton ok')"
echo "$WANT" > "$STAMP"

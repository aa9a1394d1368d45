"""FP32 vs FP16 vs INT8 ONNX accuracy on real data (scikit-learn digits), with ONNX Runtime on CPU.

    python benchmarks/precision_accuracy.py                          # resnet18 and preact_resnet18
    python benchmarks/precision_accuracy.py --models resnet18 --calib-size 512

For each model: train the zoo network (10 classes) on the digits' training split, upsampled
to 32x32 RGB (seeded; the weights are cached in ``--cache``), export it to ONNX, make the
FP16 variant (ModelOpt AutoCast, FP32 I/O) and INT8 variants (ModelOpt PTQ, Q/DQ,
calibrated on ``--calib-size`` samples of the training split only, with each method), plus
one INT8 variant deliberately calibrated on a single constant image. Then measure top-1
accuracy on the held-out split, agreement of top-1 with FP32, the largest logit difference
and the file sizes. Writes ``benchmarks/results/precision_accuracy.json`` and ``.md`` with
the machine it ran on. Accuracy does not depend on the machine's load; the times do.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_CACHE = Path.home() / ".cache" / "deploykit" / "digits"


def predict_onnx(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 256]})[0] for i in range(0, len(x), 256)])


def trained_digits(name: str, split, cache: Path, epochs: int | None = None):
    import torch

    from deploykit.digits import train_digits_model

    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{name}-32-seed0-torch{torch.__version__}.pt"
    state = torch.load(path, weights_only=True) if path.exists() else None
    options = {} if epochs is None else {"epochs": epochs}
    start = time.perf_counter()
    trained = train_digits_model(name, size=32, seed=0, split=split, state_dict=state, **options)
    if state is None:
        torch.save(trained.model.state_dict(), path)
        print(f"  trained {name} in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    return trained, path


def _row(label: str, logits: np.ndarray, ref: np.ndarray, y: np.ndarray, path: Path, **extra) -> dict:
    from deploykit import onnx_io

    return {
        "variant": label,
        "accuracy": round(float((logits.argmax(1) == y).mean()), 4),
        "agreement": round(float((logits.argmax(1) == ref.argmax(1)).mean()), 4),
        "max_abs_logit_diff": round(float(np.abs(logits - ref).max()), 4),
        "bytes": onnx_io.model_file_bytes(path),
        **extra,
    }


def measure(name: str, split, repo_root: Path, cache: Path, calib_size: int, methods: list[str], epochs: int | None) -> dict:
    from deploykit.export import export_model
    from deploykit.precision import make_variant, quantize_onnx_int8
    from deploykit.repository import ModelRepository

    print(f"{name}:", file=sys.stderr)
    trained, weights = trained_digits(name, split, cache, epochs)
    repo = ModelRepository(repo_root)
    export_model(name, repo=repo_root, weights=weights, input_size=32, num_classes=10)
    fp32_path = repo.get(name, "onnx", "fp32").path
    ref = predict_onnx(fp32_path, split.x_test)
    rows = [_row("fp32", ref, ref, split.y_test, fp32_path, torch_accuracy=round(trained.accuracy, 4))]

    start = time.perf_counter()
    fp16 = make_variant(repo, name, "fp16", calib_data=split.x_train)
    rows.append(
        _row(
            "fp16",
            predict_onnx(fp16.artifact.path, split.x_test),
            ref,
            split.y_test,
            fp16.artifact.path,
            seconds=round(time.perf_counter() - start, 1),
            kept_fp32=len(fp16.kept_fp32),
            calibration="-",
        )
    )
    calib_file = repo_root / "calib_train.npy"
    np.save(calib_file, split.x_train)  # the training split only: the test split stays unseen
    for method in methods:
        start = time.perf_counter()
        int8 = make_variant(
            repo, name, "int8", calib_data=calib_file, calib_size=calib_size, calib_method=method, use_cache=False
        )
        rows.append(
            _row(
                f"int8 ({method})",
                predict_onnx(int8.artifact.path, split.x_test),
                ref,
                split.y_test,
                int8.artifact.path,
                seconds=round(time.perf_counter() - start, 1),
                calibration=f"{int8.calibration.size} training images",
                qdq_pairs=int8.quantized["qdq"]["QuantizeLinear"],
            )
        )
    bad_path = repo_root / f"{name}_bad_calibration.onnx"
    start = time.perf_counter()
    quantize_onnx_int8(fp32_path, bad_path, np.zeros((1, 3, 32, 32), np.float32), method="max")
    rows.append(
        _row(
            "int8 (max, bad calibration)",
            predict_onnx(bad_path, split.x_test),
            ref,
            split.y_test,
            bad_path,
            seconds=round(time.perf_counter() - start, 1),
            calibration="1 constant image",
        )
    )
    for row in rows:
        print(f"  {row['variant']:<28} acc {row['accuracy']:.4f}  agree {row['agreement']:.4f}", file=sys.stderr)
    return {"model": name, "test_images": int(len(split.y_test)), "train_images": int(len(split.y_train)), "rows": rows}


def render_markdown(data: dict) -> str:
    from deploykit.machine import summarize_machine

    lines = [
        "# Precision accuracy: FP32 vs FP16 vs INT8 ONNX (ONNX Runtime, CPU)",
        "",
        f"Generated by `benchmarks/precision_accuracy.py` on {data['created_at']}. Machine: "
        f"{summarize_machine(data['machine'])}. ModelOpt {data['machine']['libraries'].get('nvidia-modelopt', '?')}, "
        f"ONNX Runtime {data['machine']['libraries'].get('onnxruntime', '?')}.",
        "",
        f"Data: scikit-learn digits upsampled to 32x32 RGB, {data['models'][0]['train_images']} training / "
        f"{data['models'][0]['test_images']} held-out images. INT8 is calibrated on {data['calib_size']} training "
        "images only; *agreement* is the share of held-out images whose top-1 class matches FP32's.",
        "",
        "| model | variant | top-1 | Δ vs FP32 (points) | agreement | max \\|Δ logit\\| | file | calibration |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for model in data["models"]:
        base = model["rows"][0]["accuracy"]
        for row in model["rows"]:
            delta = (row["accuracy"] - base) * 100
            lines.append(
                f"| {model['model']} | {row['variant']} | {row['accuracy'] * 100:.2f}% | {delta:+.2f} | "
                f"{row['agreement'] * 100:.2f}% | {row['max_abs_logit_diff']:.3f} | {row['bytes'] / 1e6:.1f} MB | "
                f"{row.get('calibration', '-')} |"
            )
    lines += [
        "",
        "The INT8 file stores its weights as INT8 behind DequantizeLinear only (ModelOpt's dq_only): about a "
        "quarter of the FP32 file, with the outputs of FP32 weights behind Q/DQ pairs "
        "(benchmarks/results/int8_weights.md compares the two forms). "
        "The *bad calibration* row calibrates on one constant image: its activation ranges are far too small, "
        "and accuracy collapses, which is what shows that calibration matters.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from deploykit.artifacts import now_iso
    from deploykit.digits import load_digits_split
    from deploykit.fileio import atomic_write_json, atomic_write_text
    from deploykit.machine import describe_machine
    from deploykit.precision import CALIB_METHODS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet18,preact_resnet18", help="comma-separated zoo names")
    parser.add_argument("--calib-size", type=int, default=256)
    parser.add_argument("--methods", default=",".join(CALIB_METHODS), help="INT8 calibration methods")
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default: deploykit.digits')")
    parser.add_argument("--cache", default=str(DEFAULT_CACHE), help="trained weights are kept here")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args(argv)

    split = load_digits_split(size=32, seed=0)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    models = []
    with tempfile.TemporaryDirectory(prefix="deploykit-precision-bench-") as tmp:
        for name in [n.strip() for n in args.models.split(",") if n.strip()]:
            models.append(measure(name, split, Path(tmp) / "models", Path(args.cache), args.calib_size, methods, args.epochs))
    data = {
        "benchmark": "precision_accuracy",
        "created_at": now_iso(),
        "machine": describe_machine().to_dict(),
        "runtime": "onnxruntime CPUExecutionProvider",
        "calib_size": args.calib_size,
        "models": models,
    }
    out = Path(args.out)
    atomic_write_json(out / "precision_accuracy.json", data)
    atomic_write_text(out / "precision_accuracy.md", render_markdown(data))
    print(f"wrote {out / 'precision_accuracy.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Real data for tests and benchmarks: scikit-learn's handwritten digits as small RGB images.

Random-weight ImageNet models cannot show accuracy, so deploykit's accuracy checks train a
zoo model on 1,797 real 8x8 digits (upsampled to 32x32 RGB) in seconds on a CPU, then
measure what export and quantization do to its held-out accuracy.

The images are made as uint8 RGB first and normalized from those, so writing them as PNG
files and preprocessing them with :data:`DIGITS_PREPROCESSING` gives the same arrays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deploykit.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

DIGITS_PREPROCESSING = Preprocessing(resize=32, crop=32)


@dataclass(frozen=True)
class DigitsSplit:
    """Train/test split: ``x_*`` float32 NCHW normalized, ``images_*`` uint8 NHWC RGB, ``y_*`` int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    images_train: np.ndarray
    images_test: np.ndarray
    size: int


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC RGB -> float32 NCHW with ImageNet mean/std (what deploykit.data.preprocess does)."""
    x = images.astype(np.float32) / 255.0
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def load_digits_split(size: int = 32, seed: int = 0, test_fraction: float = 0.25) -> DigitsSplit:
    """The 1,797 scikit-learn digits as ``size`` x ``size`` RGB images, split stratified."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    gray = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)  # N x 1 x 8 x 8
    up = F.interpolate(gray, size=(size, size), mode="bilinear", align_corners=False)
    images = (up.clamp(0, 1) * 255).round().to(torch.uint8).squeeze(1).numpy()
    images = np.repeat(images[..., None], 3, axis=-1)  # N x H x W x 3
    labels = digits.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=test_fraction, random_state=seed, stratify=labels
    )
    return DigitsSplit(
        x_train=normalize(images[idx_train]),
        y_train=labels[idx_train],
        x_test=normalize(images[idx_test]),
        y_test=labels[idx_test],
        images_train=images[idx_train],
        images_test=images[idx_test],
        size=size,
    )


@dataclass(frozen=True)
class TrainedModel:
    name: str
    model: object  # nn.Module in eval mode
    accuracy: float  # held-out top-1, in [0, 1]
    split: DigitsSplit


def evaluate(model, x: np.ndarray, y: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy of a torch model on normalized arrays."""
    import torch

    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            logits = model(torch.from_numpy(x[i : i + batch_size]))
            correct += int((logits.argmax(1).numpy() == y[i : i + batch_size]).sum())
    return correct / len(x)


def reestimate_batchnorm(model, x, batch_size: int = 256) -> None:
    """Recompute BatchNorm running statistics as an exact average over ``x`` (N x C x H x W).

    A few hundred training steps leave the running averages behind the weights; eval-mode
    outputs then drift (MobileNetV2 collapses to chance). One pass without gradients fixes it.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            model(torch.as_tensor(x[i : i + batch_size]))
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum
    model.eval()


def train_digits_model(
    name: str = "resnet18",
    size: int = 32,
    seed: int = 0,
    epochs: int = 4,
    batch_size: int = 64,
    lr: float = 3e-3,
    split: DigitsSplit | None = None,
    state_dict: dict | None = None,
) -> TrainedModel:
    """Train zoo model ``name`` (10 classes) on the digits; seeded, a few seconds on a CPU.

    With ``state_dict`` the training is skipped and the weights are loaded (a cache hit).
    """
    import torch

    from deploykit.zoo import get_model

    split = split or load_digits_split(size=size, seed=seed)
    torch.manual_seed(seed)
    model = get_model(name, num_classes=10)
    if state_dict is None:
        x = torch.from_numpy(split.x_train)
        y = torch.from_numpy(split.y_train)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
        steps = epochs * ((len(x) + batch_size - 1) // batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch_size):
                idx = order[i : i + batch_size]
                if len(idx) < 2:  # BatchNorm needs more than one sample
                    continue
                loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        reestimate_batchnorm(model, x)
    else:
        model.load_state_dict(state_dict)
    model.eval()
    return TrainedModel(name, model, evaluate(model, split.x_test, split.y_test), split)

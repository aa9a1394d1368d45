"""What a variant must meet against its reference: one :class:`Tolerance` row per precision.

Parity (``deploykit parity``) holds FP32 to float rounding and FP16/INT8 to agreement bars;
export's verification holds its fresh ONNX file to a per-image relative error (``max_rel``)
through the same rows and the same comparison.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace

from deploykit.artifacts import PRECISIONS
from deploykit.errors import UsageError


@dataclass(frozen=True)
class Tolerance:
    """What a variant must meet; ``None`` means "not checked".

    - ``agreement``: minimum top-1 agreement with the reference, a fraction (0.99 = 99%).
    - ``top5_agreement``: minimum top-5 agreement (same five classes, any order).
    - ``max_abs``: maximum absolute logit error, *scaled by the reference's logit range*: the
      check is ``max_abs_error <= max_abs * max(1, max |reference logit|)``. Float32 rounding
      error grows with the magnitude of the values, so a fixed 1e-3 would fail a correct
      model whose logits reach 1e4 and say nothing about one whose logits are 1e-4; for
      logits within ±1 it is the plain absolute bound.
    - ``min_cosine``: minimum per-image cosine similarity of the logits.
    - ``accuracy_drop``: maximum drop of top-1 accuracy, in percentage points (reference
      minus variant); checked only when the images have labels.
    - ``max_rel``: maximum per-image error relative to that image's largest |logit|
      (``max|variant - reference| / max|reference|``); with it, a top-1 change fails only on
      a *decisive* image, whose reference top-1 leads its runner-up by more than
      ``2 x max_rel`` of that scale, so near-ties (random weights) cannot flip a verdict by
      float noise. Export's verification uses this row.
    """

    agreement: float | None = None
    top5_agreement: float | None = None
    max_abs: float | None = None
    min_cosine: float | None = None
    accuracy_drop: float | None = None
    max_rel: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


TOLERANCE_FIELDS = tuple(f.name for f in fields(Tolerance))

# FP32 variants should match to float rounding: every image agrees. Reduced precisions
# change some near-tie decisions; the bounds are those the precision issue holds FP16 and
# INT8 ONNX to on held-out digits.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(agreement=1.0, max_abs=1e-3),
    "fp16": Tolerance(agreement=0.99),
    "int8": Tolerance(agreement=0.97, accuracy_drop=1.5),
}

# Fraction-valued fields: "98%" is accepted for them and values above 1 are refused.
_FRACTIONS = ("agreement", "top5_agreement", "min_cosine")


def _parse_value(field_name: str, text: str) -> float | None:
    text = text.strip()
    if text.lower() in ("none", "off", "-"):
        return None
    percent = text.endswith("%")
    try:
        value = float(text[:-1] if percent else text)
    except ValueError:
        raise UsageError(
            f"tolerance {field_name}={text!r} is not a number",
            hint="write e.g. fp16.agreement=0.98, fp16.agreement=98% or fp32.max_abs=none",
        ) from None
    if percent:
        if field_name not in _FRACTIONS:
            raise UsageError(f"tolerance {field_name} is not a fraction: write it without '%'")
        value /= 100.0
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"tolerance {field_name}={text} must be a finite number >= 0")
    if field_name in ("agreement", "top5_agreement") and value > 1:
        raise UsageError(
            f"tolerance {field_name}={text} is above 1",
            hint="agreement is a fraction (0.98) or a percentage (98%)",
        )
    if field_name == "min_cosine" and value > 1:
        raise UsageError(f"tolerance min_cosine={text} is above 1 (cosine similarity is at most 1)")
    return value


def parse_tolerance_overrides(specs: Iterable[str]) -> dict[str, dict[str, float | None]]:
    """``["fp16.agreement=0.98", "int8.accuracy_drop=1"]`` -> ``{"fp16": {"agreement": 0.98}, ...}``.

    A spec without a precision (``agreement=0.995``) applies to every precision. Values:
    numbers, percentages for fractions (``98%``), or ``none`` to switch a check off.
    """
    out: dict[str, dict[str, float | None]] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep:
            raise UsageError(
                f"tolerance {spec!r} has no '='",
                hint="write PRECISION.METRIC=VALUE, e.g. fp16.agreement=0.98",
            )
        precision, dot, name = key.strip().rpartition(".")
        targets = [precision] if dot else list(PRECISIONS)
        if dot and precision not in PRECISIONS:
            raise UsageError(f"unknown precision {precision!r} in tolerance {spec!r}", hint=f"choose from {', '.join(PRECISIONS)}")
        if name not in TOLERANCE_FIELDS:
            raise UsageError(f"unknown tolerance {name!r} in {spec!r}", hint=f"choose from {', '.join(TOLERANCE_FIELDS)}")
        parsed = _parse_value(name, value)
        for target in targets:
            out.setdefault(target, {})[name] = parsed
    return out


def resolve_tolerances(
    overrides: Mapping[str, Tolerance | Mapping[str, float | None]] | None = None,
) -> dict[str, Tolerance]:
    """The defaults with ``overrides`` applied: a whole :class:`Tolerance` per precision, or
    a mapping of the fields to change (as :func:`parse_tolerance_overrides` returns)."""
    result = dict(DEFAULT_TOLERANCES)
    for precision, value in (overrides or {}).items():
        if precision not in PRECISIONS:
            raise UsageError(f"unknown precision {precision!r} in tolerances", hint=f"choose from {', '.join(PRECISIONS)}")
        if isinstance(value, Tolerance):
            result[precision] = value
            continue
        unknown = [k for k in value if k not in TOLERANCE_FIELDS]
        if unknown:
            raise UsageError(f"unknown tolerance {unknown[0]!r}", hint=f"choose from {', '.join(TOLERANCE_FIELDS)}")
        result[precision] = replace(result[precision], **dict(value))
    return result

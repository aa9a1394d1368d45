"""The typed results of a parity check: one :class:`VariantResult` per variant and backend,
gathered in a :class:`ParityReport` (truthy when every checked variant passed)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from deploykit.artifacts import now_iso
from deploykit.parity.metrics import Flip, ParityMetrics, ReferenceSummary, _pct
from deploykit.parity.tolerances import Tolerance


@dataclass(frozen=True)
class VariantResult:
    """One variant's verdict: ``status`` is "pass", "fail", "error" (could not run) or "skipped"."""

    name: str
    backend: str | None
    precision: str | None
    status: str
    metrics: ParityMetrics | None = None
    tolerance: Tolerance | None = None
    failures: tuple[str, ...] = ()
    reason: str | None = None
    path: str | None = None
    sidecar_key: str | None = None
    not_recorded: str | None = None  # why the verdict could not be written to the sidecar

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def checked(self) -> bool:
        return self.status in ("pass", "fail", "error")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "status": self.status,
            "metrics": self.metrics.to_dict() if self.metrics else None,
            "tolerance": self.tolerance.to_dict() if self.tolerance else None,
            "failures": list(self.failures),
            "reason": self.reason,
            "path": self.path,
            "sidecar_key": self.sidecar_key,
            "not_recorded": self.not_recorded,
        }

    def summary_lines(self) -> list[str]:
        if self.status in ("skipped", "error"):
            word = "skipped" if self.status == "skipped" else "ERROR"
            return [f"  {self.name}: {word} ({self.reason})"]
        m = self.metrics
        assert m is not None
        acc = ""
        if m.accuracy_delta is not None:
            acc = f", accuracy {_pct(m.reference_accuracy)} -> {_pct(m.variant_accuracy)}"
        lines = [
            f"  {self.name}: {self.status.upper()} top-1 agreement {_pct(m.top1_agreement)}"
            f"{acc}, max abs error {m.max_abs_error:.3g}, min cosine {m.min_cosine:.6f}"
        ]
        lines.extend(f"    - {failure}" for failure in self.failures)
        if self.status == "fail" and m.flipped:
            shown = ", ".join(_flip_text(f) for f in m.flipped[:5])
            more = f" (+{m.flipped_count - 5} more)" if m.flipped_count > 5 else ""
            lines.append(f"    flipped: {shown}{more}")
        return lines


def _flip_text(f: Flip) -> str:
    label = f", label {f.label}" if f.label is not None else ""
    return f"{f.name} (reference {f.reference}, variant {f.variant}{label})"


@dataclass(frozen=True)
class DataSummary:
    source: str
    images: int
    labeled: bool
    sha256: str  # of the image names, the preprocessed input tensors and the labels
    preprocessing: dict[str, Any] | None = None


@dataclass(frozen=True)
class ParityReport:
    """Every variant's verdict against one reference on one data set.

    Truthy when at least one variant was checked and every checked variant passed
    (skipped backends neither pass nor fail, but a report that checked nothing is falsy).
    """

    model: str | None
    reference: ReferenceSummary
    data: DataSummary
    results: tuple[VariantResult, ...]
    notes: tuple[str, ...] = ()
    created_at: str = field(default_factory=now_iso)

    @property
    def checked(self) -> tuple[VariantResult, ...]:
        return tuple(r for r in self.results if r.checked)

    @property
    def failed(self) -> tuple[VariantResult, ...]:
        return tuple(r for r in self.results if r.checked and not r.passed)

    @property
    def skipped(self) -> tuple[VariantResult, ...]:
        return tuple(r for r in self.results if r.status == "skipped")

    @property
    def not_recorded(self) -> tuple[VariantResult, ...]:
        """Verdicts that were asked to be written to a sidecar but could not be (full disk, read-only)."""
        return tuple(r for r in self.results if r.not_recorded)

    @property
    def passed(self) -> bool:
        return bool(self.checked) and not self.failed

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "passed": self.passed,
            "reference": asdict(self.reference),
            "data": asdict(self.data),
            "results": [r.to_dict() for r in self.results],
            "notes": list(self.notes),
            "created_at": self.created_at,
        }

    def summary(self) -> str:
        """A few readable lines: one per variant, the reasons it failed, its first flips."""
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"parity {verdict}: {self.model or 'model'} vs {self.reference.name} on "
            f"{self.data.images} images from {self.data.source}"
        ]
        if not self.checked:
            lines.append("  nothing was checked (every variant was skipped)")
        for r in self.results:
            lines.extend(r.summary_lines())
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

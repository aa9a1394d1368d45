"""Roofline bounds per layer and device: what a model can reach on a GPU you do not own.

``estimate(models, devices, precisions, batches)`` returns an :class:`EstimateResult` of
frozen :class:`ModelEstimate` rows (each with its per-layer :class:`LayerBound`); the
renderers in ``deploykit.estimate.render`` (table, JSON) and the charts in
``deploykit.estimate.plot`` draw that one object. The device table (with a source for every
figure) is ``deploykit/data/roofline_devices.json``; ``cpu`` is this machine, measured.
Importing this package imports no torch.
"""

from deploykit.estimate.api import DEFAULT_DEVICES, EstimateResult, estimate, parse_batches
from deploykit.estimate.devices import PRECISIONS, DeviceSpec, device_names, get_device
from deploykit.estimate.roofline import LayerBound, ModelEstimate, estimate_stats

__all__ = [
    "DEFAULT_DEVICES",
    "PRECISIONS",
    "DeviceSpec",
    "EstimateResult",
    "LayerBound",
    "ModelEstimate",
    "device_names",
    "estimate",
    "estimate_stats",
    "get_device",
    "parse_batches",
]

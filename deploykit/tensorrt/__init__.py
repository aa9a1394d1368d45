"""TensorRT: strongly typed engines from ONNX variants, and the rules around them.

- :mod:`~deploykit.tensorrt.loading`  importing TensorRT (with its install hint), version rules,
  CUDA, the collecting logger, TensorRT data types
- :mod:`~deploykit.tensorrt.profiles`  the batch optimization profile and the builder options
- :mod:`~deploykit.tensorrt.preflight`  does the ONNX graph carry its precision; parser errors
- :mod:`~deploykit.tensorrt.report`  the precision the built engine runs in (engine inspector),
  per-layer times
- :mod:`~deploykit.tensorrt.compatibility`  engines belong to one GPU model and TensorRT release
- :mod:`~deploykit.tensorrt.record`  the build record, the lineage sidecar, config.pbtxt
- :mod:`~deploykit.tensorrt.build`  the build itself: the only module that creates a ``trt.Builder``

Only ``loading`` imports ``tensorrt`` (inside a function); every rule is tested without a GPU.
The runner (:mod:`deploykit.runtimes.tensorrt_runner`) depends on loading, report and
compatibility, never on the builder. Nothing is imported here.
"""

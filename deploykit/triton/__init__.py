"""Triton's ``config.pbtxt``, written and read in one place through Triton's own schema.

- :mod:`deploykit.triton.schema` loads Triton's ``ModelConfig`` protobuf message (shipped by
  ``tritonclient`` as ``model_config_pb2``) without importing grpc.
- :mod:`deploykit.triton.config` renders a variant's config (export, quantize, build) and parses
  one (``repo check``, the server) with protobuf's ``text_format``; errors keep line and column.

Nothing is imported here: ``import deploykit.triton`` costs nothing.
"""

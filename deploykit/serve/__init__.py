"""Serving: the model repository behind a real Triton Inference Server.

- :mod:`deploykit.serve.pbtxt`  config.pbtxt (protobuf text format) without heavy dependencies
- :mod:`deploykit.serve.check`  ``check_repository``: validate the repository as Triton will load it
- :mod:`deploykit.serve.server` the local server (PyTriton; runs in its own numpy<2 environment)
  and ``LocalServer``, which finds that environment and starts/stops the server process
- :mod:`deploykit.serve.client` ``infer``: preprocess images and query a server with tritonclient

Nothing is imported here, so ``import deploykit.serve`` stays free of tritonclient and pytriton.
"""

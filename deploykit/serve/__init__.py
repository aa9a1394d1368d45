"""Serving: the model repository behind a real Triton Inference Server.

- :mod:`deploykit.serve.check`     ``check_repository``: validate the repository as Triton will
  load it (the rules in :mod:`deploykit.serve.check_rules`)
- :mod:`deploykit.serve.plan`      which variants a backend can serve, read from their configs
- :mod:`deploykit.serve.protocol`  what the launcher and the server process share: arguments,
  the status file, the libpython rule
- :mod:`deploykit.serve.launcher`  ``LocalServer`` (main environment): finds the server
  environment, starts and stops the server process
- :mod:`deploykit.serve.process`   the server process (server environment, numpy<2): PyTriton's
  tritonserver with each variant bound to its deploykit runner
- :mod:`deploykit.serve.client`    ``infer``: preprocess images and query a server with tritonclient

Nothing is imported here, so ``import deploykit.serve`` stays free of tritonclient and pytriton.
"""

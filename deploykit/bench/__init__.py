"""Latency, throughput and memory per backend, precision and batch size.

``run_matrix(configs)`` measures each :class:`BenchConfig` and returns a :class:`BenchRun`
(the machine plus one :class:`BenchResult` per configuration); every output format (rich
table, JSON, CSV, Markdown, the report's charts) renders that one object.

The package, in the order a number is made:

- :mod:`~deploykit.bench.config`: one configuration, its checks, the matrix of them;
- :mod:`~deploykit.bench.prepare`: in the parent, the backend's row says whether the
  configuration applies, the artifact is found or made (``deploykit.pipeline``), the analytic
  cost (:mod:`~deploykit.bench.cost`) is computed and the batch checked against free memory;
- :mod:`~deploykit.bench.worker`: each configuration runs in a fresh Python process by default
  (``isolate=True``), so one backend's memory, thread pools and JIT caches do not colour the
  next one; it times with :mod:`~deploykit.bench.timing` (warm-up, then windows until two
  agree) and profiles per layer through :meth:`Runner.profile_layers`, apart from the timing;
- :mod:`~deploykit.bench.results` and :mod:`~deploykit.bench.render`: the typed results and
  their renderers.

Achieved GFLOP/s = 2 x MACs per image (from ``deploykit.analyze``) x batch / mean latency.
The fraction of peak uses ``--peak-gflops`` when given, else the device table
``deploykit/data/devices.json`` (GPUs), else a labelled CPU estimate (cores x clock x FP32
FLOP/cycle of its vector ISA); ``peak_source`` says which (``deploykit.machine``).

Only the standard library, numpy and light deploykit modules are imported at module level:
the GPU check runs this package on hosts that have torch and nothing else.
"""

from __future__ import annotations

from deploykit.bench.config import (
    DEFAULT_ITERATIONS,
    DEFAULT_TOLERANCE,
    BenchConfig,
    default_threads,
    describe_config,
    expand_matrix,
    plan_matrix,
    validate_config,
    with_default_threads,
)
from deploykit.bench.cost import check_memory, estimate_memory_bytes, model_cost
from deploykit.bench.matrix import measure_config, run_matrix
from deploykit.bench.prepare import artifact_input_size, ensure_artifact, one_line, prepare
from deploykit.bench.render import (
    CSV_COLUMNS,
    ceiling_notes,
    machine_line,
    peak_notes,
    render_table,
    render_text,
    result_row,
    save,
    table_rows,
    to_csv,
    to_markdown,
)
from deploykit.bench.results import (
    SCHEMA,
    STATUSES,
    BenchResult,
    BenchRun,
    LatencyResult,
    LayerTiming,
    jsonable,
)
from deploykit.bench.timing import (
    latency_statistics,
    measure,
    measure_phases,
    time_callable,
    windows_agree,
)
from deploykit.bench.worker import (
    execute_job,
    finish_result,
    layer_profile,
    make_input,
    make_runner,
    run_isolated,
    worker_main,
)

__all__ = [
    "CSV_COLUMNS",
    "DEFAULT_ITERATIONS",
    "DEFAULT_TOLERANCE",
    "SCHEMA",
    "STATUSES",
    "BenchConfig",
    "BenchResult",
    "BenchRun",
    "LatencyResult",
    "LayerTiming",
    "artifact_input_size",
    "ceiling_notes",
    "check_memory",
    "default_threads",
    "describe_config",
    "ensure_artifact",
    "estimate_memory_bytes",
    "execute_job",
    "expand_matrix",
    "finish_result",
    "jsonable",
    "latency_statistics",
    "layer_profile",
    "machine_line",
    "make_input",
    "make_runner",
    "measure",
    "measure_phases",
    "measure_config",
    "model_cost",
    "one_line",
    "peak_notes",
    "plan_matrix",
    "prepare",
    "render_table",
    "render_text",
    "result_row",
    "run_isolated",
    "run_matrix",
    "save",
    "table_rows",
    "time_callable",
    "to_csv",
    "to_markdown",
    "validate_config",
    "windows_agree",
    "with_default_threads",
    "worker_main",
]

"""``python -m deploykit.bench --worker JOB.json OUT.json``: the isolated worker."""

import sys

from deploykit.bench.worker import worker_main

sys.exit(worker_main(sys.argv[1:]))

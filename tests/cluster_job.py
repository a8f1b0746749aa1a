"""``candid`` under spark-submit with the fake engine of ``tests.cluster_fakes`` injected:
``spark-submit $(candid submit-args ...) --py-files tests.zip tests/cluster_job.py describe ...``.

The multi-executor tests submit this instead of ``jobs/cli.py`` because the CLI has no switch
for an engine factory (by design: tests inject callables, users pick a backend in the config).
"""

import sys

from jobs.cli import main
from tests.cluster_fakes import make_where_engine

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], make_engine=make_where_engine))

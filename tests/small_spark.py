"""Spark settings for the tests' tiny tables (a few to a few hundred rows): the test session's
own, and those of the job configs that the CLI, spark-submit and standalone-cluster tests run.
The demo test and the jar-resolution tests start Spark from the shipped profile as it is, so
Spark's defaults stay covered end to end.

On such tables Spark's per-query work is planning, not data: generating and compiling Java for
each query (whole-stage code generation, and the generated projections and predicates that
``NO_CODEGEN`` replaces with Spark's own interpreted evaluation, its fallback path) and
adaptive re-planning after each shuffle cost more CPU than they save. The results are the same;
only how Spark evaluates expressions changes. Users' profiles (``conf/spark``) keep Spark's
defaults, which pay off on real tables (``spark.sql.codegen.factoryMode`` is an internal
setting, read by Spark 4.2's expression code generators).

Measured: ``pytest tests/spark/test_provenance.py tests/spark/test_results_layout.py
tests/spark/test_user_tables.py`` (11 tests, one session) took 213 s and 222 s with Spark's
defaults, 187 s with the first two settings only, 160 s and 143 s with all three (runs
interleaved on one scratch clone, the same day). The serial garbage collector changed nothing
measurable there (148 s and 176 s with it, 149 s and 169 s without).
"""

SMALL_DATA_CONFS = {
    "spark.sql.adaptive.enabled": "false",
    "spark.sql.codegen.wholeStage": "false",
    "spark.sql.codegen.factoryMode": "NO_CODEGEN",
}

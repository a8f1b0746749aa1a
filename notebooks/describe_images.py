# Databricks notebook source
# MAGIC %md
# MAGIC # Candid: describe images
# MAGIC Reads the widgets (tables, prompt version, config), builds the validated job config, and
# MAGIC runs the describe job on this cluster's SparkSession. All logic lives in `jobs/`; install
# MAGIC the `candid` wheel (with its `gpu` extra) on the cluster first (docs/CLUSTER.md).
# MAGIC Outside Databricks it runs as a plain Python file: widgets come from `widget_values`
# MAGIC or `CANDID_WIDGET_<NAME>` environment variables (`jobs/notebook.py`).

# COMMAND ----------

from jobs.describe.run import run_describe
from jobs.notebook import DESCRIBE_WIDGETS, config_from_widgets, notebook_spark, read_widgets

values = read_widgets(globals(), DESCRIBE_WIDGETS)
config = config_from_widgets(values)

# COMMAND ----------

summary = run_describe(config, notebook_spark(globals(), config.spark))
print(f"{summary.rows_processed} images described into {summary.results_table} "
      f"({summary.tally.describe_statuses()}); MLflow run {summary.run_id}")

# Databricks notebook source
# MAGIC %md
# MAGIC # Candid: prompt A/B before a full run
# MAGIC Runs several prompt versions on one stratified sample of the input table and writes a
# MAGIC side-by-side Delta table plus an offline review page (also logged to MLflow). Widgets: the
# MAGIC tables, the prompt versions, the sample size, the output folder (`jobs/notebook.py`).

# COMMAND ----------

from jobs.evaluation.compare import run_compare
from jobs.notebook import (
    COMPARE_WIDGETS,
    config_from_widgets,
    notebook_spark,
    prompt_versions,
    read_widgets,
    sample_size,
)

values = read_widgets(globals(), COMPARE_WIDGETS)
config = config_from_widgets(values)

# COMMAND ----------

summary = run_compare(
    config, prompt_versions(values), sample_size(values), values["out"],
    notebook_spark(globals(), config.spark),
)
print(f"compared {', '.join(summary.versions)} on {summary.sample_rows} images: "
      f"{summary.out_dir}/side_by_side, review page {summary.html_path}, "
      f"MLflow run {summary.run_id}")

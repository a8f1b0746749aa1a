# Databricks notebook source
# MAGIC %md
# MAGIC # Candid: prompt A/B before a full run
# MAGIC Runs several prompt versions on one stratified sample and writes a side-by-side Delta
# MAGIC table plus an offline review page (also logged to MLflow).

# COMMAND ----------

from jobs.compare import run_compare
from jobs.config import DescribeConfig, load_config

dbutils.widgets.text("config", "conf/cluster-example.yaml", "Config YAML")  # noqa: F821
dbutils.widgets.text("prompts", "v1,v2,v3", "Prompt versions")  # noqa: F821
dbutils.widgets.text("sample", "200", "Sample size")  # noqa: F821
dbutils.widgets.text("out", "/dbfs/candid/compare", "Output folder")  # noqa: F821

config = load_config(DescribeConfig, dbutils.widgets.get("config"))  # noqa: F821
versions = [v.strip() for v in dbutils.widgets.get("prompts").split(",") if v.strip()]  # noqa: F821

# COMMAND ----------

summary = run_compare(
    config, versions, int(dbutils.widgets.get("sample")), dbutils.widgets.get("out"), spark  # noqa: F821
)
print(summary)

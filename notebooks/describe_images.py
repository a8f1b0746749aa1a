# Databricks notebook source
# MAGIC %md
# MAGIC # Candid: describe images
# MAGIC Reads the widgets, builds the validated job config, and runs the describe job on this
# MAGIC cluster's SparkSession. All logic lives in `jobs/`; install the `candid` wheel (with its
# MAGIC `gpu` extra) on the cluster first.

# COMMAND ----------

from jobs.config import DescribeConfig, load_config
from jobs.describe import run_describe

dbutils.widgets.text("config", "conf/cluster-example.yaml", "Config YAML")  # noqa: F821
dbutils.widgets.text("overrides", "", "Overrides (key=value, one per line)")  # noqa: F821
dbutils.widgets.text("prompt_version", "", "Prompt version (blank: from config)")  # noqa: F821

config_path = dbutils.widgets.get("config")  # noqa: F821
overrides = [line.strip() for line in dbutils.widgets.get("overrides").splitlines() if line.strip()]  # noqa: F821
if dbutils.widgets.get("prompt_version"):  # noqa: F821
    overrides.append(f"prompt.version={dbutils.widgets.get('prompt_version')}")  # noqa: F821

# COMMAND ----------

config = load_config(DescribeConfig, config_path, overrides)
summary = run_describe(config, spark)  # noqa: F821
print(summary)

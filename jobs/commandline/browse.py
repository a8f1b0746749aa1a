"""The "where to look at this run" line a command prints after logging to MLflow.

What works depends on the tracking URI: a database or file store is opened by starting the UI on
it locally (``mlflow ui --backend-store-uri ...``); an http(s) tracking server already serves
the UI, so the run's page there is the answer, and starting another UI against a server URL
would fail; on Databricks the run lives in the workspace. Credentials in the URI are redacted
before anything is printed.
"""

from __future__ import annotations

import shlex
from urllib.parse import quote

from jobs.tracking.redaction import redact_text

# Stores that `mlflow ui --backend-store-uri` opens directly (SQLAlchemy URIs).
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
# The plain file store is refused by MLflow 3.13+ unless this is set (mlflow's own variable).
FILE_STORE_OPT_IN = "MLFLOW_ALLOW_FILE_STORE=true"


def browse_hint(tracking_uri: str, run_id: str | None = None,
                experiment_id: str | None = None) -> str:
    """How to see a run: a command to start the UI, or the run's URL on a tracking server.

    MLflow's web UI routes ``#/runs/<run_id>`` to the run's page in its experiment, so a run id
    alone makes a working link; with the experiment id the link names it directly.

    Example:
        >>> browse_hint("sqlite:///build/mlflow/mlflow.db")
        'mlflow ui --backend-store-uri sqlite:///build/mlflow/mlflow.db'
        >>> browse_hint("https://mlflow.example.com/", "abc123")
        'https://mlflow.example.com/#/runs/abc123'
        >>> browse_hint("http://me:pw@mlflow:5000", "abc", "7")
        'http://me:***redacted***@mlflow:5000/#/experiments/7/runs/abc'
    """
    uri = redact_text(tracking_uri.strip())
    scheme = uri.split("://", 1)[0].split("+", 1)[0].lower() if "://" in uri else ""
    if scheme in ("http", "https"):
        return _server_url(uri, run_id, experiment_id)
    if uri == "databricks" or scheme == "databricks":
        where = f", run {run_id}" if run_id else ""
        return f"in the Databricks workspace: Experiments{where}"
    if scheme in DATABASE_SCHEMES:
        return f"mlflow ui --backend-store-uri {shlex.quote(uri)}"
    # file:///..., or a bare path: MLflow's file store.
    return f"{FILE_STORE_OPT_IN} mlflow ui --backend-store-uri {shlex.quote(uri)}"


def _server_url(uri: str, run_id: str | None, experiment_id: str | None) -> str:
    base = uri.split("#", 1)[0].rstrip("/")
    parts = []
    if experiment_id:
        parts.append(f"experiments/{quote(str(experiment_id), safe='')}")
    if run_id:
        parts.append(f"runs/{quote(run_id, safe='')}")
    return f"{base}/#/{'/'.join(parts)}" if parts else f"{base}/"

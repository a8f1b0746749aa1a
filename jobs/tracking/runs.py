"""MLflow logging for job runs, from the driver only.

Delta is the source of truth; MLflow is the index humans browse. So a tracking failure never
loses results: failures are recorded and warned about as they happen; with ``on_error: fail``
the job raises them (``raise_for_failures``) only after the results are committed. Values that
look like credentials are redacted before anything is logged (``jobs.tracking.redaction``).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobs.job_settings import TrackingSettings
from jobs.tracking.redaction import redact, redact_text

log = logging.getLogger("candid.tracking")

MLFLOW_PARAM_MAX = 6000
# Run ids of runs MLflow never saw (tracking off or unreachable): rows still need an id.
LOCAL_RUN_PREFIX = "local-"


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused a write, and the config says to fail."""


def local_run_id() -> str:
    return f"{LOCAL_RUN_PREFIX}{uuid.uuid4().hex}"


class RunTracker:
    """One MLflow run, created at job start (so rows can carry its id) and filled in after the
    Delta commit. Every MLflow call goes through ``_guard``: failures follow ``on_error``."""

    def __init__(self, settings: TrackingSettings):
        self.settings = settings
        self.run_id: str | None = None
        self.failures: list[str] = []
        self._client = None

    def start(self, run_name: str, tags: Mapping[str, str]) -> str:
        """Create the run; returns its id, or a local id when tracking is off or failing."""
        if not self.settings.enabled:
            return local_run_id()
        run_id = self._guard("start run", lambda: self._create_run(run_name, tags))
        self.run_id = run_id
        return run_id or local_run_id()

    def resume(self, run_id: str) -> bool:
        """Log to an existing (possibly finished) run, e.g. a review page for a describe run.
        False when tracking is off, the id is a local one, or MLflow cannot be reached."""
        if not self.settings.enabled or run_id.startswith(LOCAL_RUN_PREFIX):
            return False
        found = self._guard(f"find run {run_id}", lambda: self._connect().get_run(run_id))
        self.run_id = run_id if found is not None else None
        return self.run_id is not None

    def metric(self, run_id: str, key: str) -> float | None:
        """The last value a run logged for ``key``; None when absent or MLflow fails."""
        return self.metrics(run_id).get(key)

    def metrics(self, run_id: str) -> dict[str, float]:
        """The last value of every metric a run logged; empty when MLflow fails."""
        run = self._guard(f"read run {run_id}", lambda: self._connect().get_run(run_id))
        return {} if run is None else dict(run.data.metrics)

    def _connect(self):
        import mlflow
        from mlflow import MlflowClient

        uri = self.settings.tracking_uri
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        self._client = MlflowClient(tracking_uri=uri)
        return self._client

    def _create_run(self, run_name: str, tags: Mapping[str, str]) -> str:
        self._connect()
        experiment = self._client.get_experiment_by_name(self.settings.experiment)
        if experiment is None:
            location = self.settings.artifact_location
            if location and "://" not in location:
                location = Path(location).resolve().as_uri()
            experiment_id = self._client.create_experiment(
                self.settings.experiment, artifact_location=location
            )
        else:
            experiment_id = experiment.experiment_id
        run = self._client.create_run(experiment_id, run_name=run_name, tags=dict(tags))
        return run.info.run_id

    def register_prompt(self, spec):
        """Register the prompt in MLflow's Prompt Registry (reusing a same-content version);
        None when tracking is off or failing."""
        if self.run_id is None:
            return None
        from jobs.tracking.prompt_store import register_prompt

        return self._guard(
            f"register prompt {spec.key}",
            lambda: register_prompt(spec, self.settings.tracking_uri),
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        clean = redact(params)
        batch = [Param(k, str(v)[:MLFLOW_PARAM_MAX]) for k, v in sorted(clean.items())]
        self._when_running("log params", lambda: self._client.log_batch(self.run_id, params=batch))

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())]
        self._when_running(
            "log metrics", lambda: self._client.log_batch(self.run_id, metrics=batch)
        )

    def log_text(self, text: str, artifact_file: str) -> None:
        self._when_running(
            f"log {artifact_file}", lambda: self._client.log_text(self.run_id, text, artifact_file)
        )

    def log_table(self, frame, artifact_file: str) -> None:
        """One artifact file per call: mlflow.log_table re-uploads a whole file to append."""
        import mlflow

        self._when_running(
            f"log {artifact_file}",
            lambda: mlflow.log_table(data=frame, artifact_file=artifact_file, run_id=self.run_id),
        )

    def log_artifact(self, local_path: str | os.PathLike, artifact_path: str | None = None) -> None:
        self._when_running(
            f"log {local_path}",
            lambda: self._client.log_artifact(self.run_id, str(local_path), artifact_path),
        )

    def finish(self, status: str = "FINISHED") -> None:
        self._when_running("end run", lambda: self._client.set_terminated(self.run_id, status))

    def _when_running(self, what: str, action) -> None:
        if self.run_id is not None:
            self._guard(what, action)

    def raise_for_failures(self) -> None:
        """With ``on_error: fail``, raise if any MLflow call failed. Call after the commit."""
        if self.failures and self.settings.on_error == "fail":
            raise TrackingError("; ".join(self.failures))

    def _guard(self, what: str, action):
        try:
            return action()
        except Exception as err:  # noqa: BLE001 - any tracking failure is recorded, never lost
            # Errors quote the tracking URI, which may carry user:password@.
            message = redact_text(f"MLflow: could not {what}: {type(err).__name__}: {err}")
            self.failures.append(message)
            log.warning("!!! %s (results in Delta are unaffected)", message)
            return None

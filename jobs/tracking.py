"""MLflow logging for job runs, from the driver only.

Delta is the source of truth; MLflow is the index humans browse. So a tracking failure never
loses results: failures are recorded and warned about as they happen; with ``on_error: fail``
the job raises them (``raise_for_failures``) only after the results are committed. Values that look like
credentials are redacted before anything is logged.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jobs.config import TrackingSettings

log = logging.getLogger("candid.tracking")

REDACTED = "***redacted***"
# A key is a credential when one of its words (split on . _ - and camelCase) is one of these,
# or two neighbouring words form one of the pairs: fs.s3a.secret.key, AWS_SECRET_ACCESS_KEY,
# HF_TOKEN, spark.ssl.keyPassword, fs.azure.account.key... but not max_tokens.
_SECRET_WORDS = frozenset({
    "secret", "password", "passwd", "pwd", "token", "credential", "credentials", "apikey",
    "sas", "signature", "authorization", "auth", "privatekey",
})
_SECRET_PAIRS = frozenset({
    ("access", "key"), ("private", "key"), ("api", "key"), ("account", "key"),
    ("storage", "key"), ("session", "key"), ("client", "secret"), ("encryption", "key"),
    ("shared", "key"), ("signing", "key"),
})
_KEY_WORDS = re.compile(r"[._\-\s/:]+|(?<=[a-z0-9])(?=[A-Z])")
# user:password@ in URLs.
_URL_USERINFO = re.compile(r"(?<=://)([^/@\s:]+):([^/@\s]+)@")
# Credentials in URL query strings: signed URLs (Azure SAS sig=, S3/GCS X-*-Signature=), tokens.
_URL_SECRET_PARAM = re.compile(
    r"(?i)([?&](?:sig|signature|x-amz-signature|x-amz-credential|x-amz-security-token|"
    r"x-goog-signature|x-goog-credential|token|access_token|api_key|apikey|password|secret)=)"
    r"[^&#\s'\"]+"
)
MLFLOW_PARAM_MAX = 6000


class TrackingError(RuntimeError):
    """MLflow could not be reached or refused a write, and the config says to fail."""


def is_secret_key(key: str) -> bool:
    """True when a config/env key names a credential."""
    words = [w.lower() for w in _KEY_WORDS.split(str(key)) if w]
    return any(w in _SECRET_WORDS for w in words) or any(
        pair in _SECRET_PAIRS for pair in zip(words, words[1:])
    )


def redact_text(text: str) -> str:
    """``text`` with credentials in URLs replaced: ``user:password@`` and secret query
    parameters (``?sig=...``). For free text such as error messages, which name URLs.

    Example:
        >>> redact_text("http://me:hunter2@mlflow:5000 failed")
        'http://me:***redacted***@mlflow:5000 failed'
    """
    text = _URL_USERINFO.sub(rf"\1:{REDACTED}@", text)
    return _URL_SECRET_PARAM.sub(rf"\1{REDACTED}", text)


def redact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """A copy with credential-looking values replaced, recursively (mappings and lists)."""
    return {key: REDACTED if is_secret_key(key) else _redact_value(value)
            for key, value in mapping.items()}


def _redact_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, (list, tuple)):
        return type(value)(_redact_value(item) for item in value)
    if isinstance(value, str):
        return redact_text(value)
    return value


def local_run_id() -> str:
    return f"local-{uuid.uuid4().hex}"


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

    def _create_run(self, run_name: str, tags: Mapping[str, str]) -> str:
        import mlflow
        from mlflow import MlflowClient

        uri = self.settings.tracking_uri
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        self._client = MlflowClient(tracking_uri=uri)
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
        from jobs.prompt_registry import register_prompt

        return self._guard(
            f"register prompt {spec.key}",
            lambda: register_prompt(spec, self.settings.tracking_uri),
        )

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        clean = redact(params)
        batch = [Param(k, str(v)[:MLFLOW_PARAM_MAX]) for k, v in sorted(clean.items())]
        self._when_running("log params", lambda: self._client.log_batch(self.run_id, params=batch))

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in sorted(metrics.items())]
        self._when_running("log metrics", lambda: self._client.log_batch(self.run_id, metrics=batch))

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

"""A fresh MLflow sqlite store per test without paying for a new one each time.

Creating a sqlite tracking store runs MLflow's schema migrations: 2-5 s here, for each of the
two dozen configs the Spark and e2e tests write. The migrations run once per test process,
into a template file; each test gets its own copy (a file copy), so stores stay isolated
(every test sees only its own runs) and the migrated schema is MLflow's own.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE_ROOT = REPO / "build" / "test" / "mlflow-template"
STORE_FILE = "mlflow.db"
_lock = threading.Lock()


def template_path() -> Path:
    """This process's migrated, empty store (made on first use)."""
    template = TEMPLATE_ROOT / str(os.getpid()) / STORE_FILE
    with _lock:
        if not template.exists():
            from mlflow import MlflowClient

            building = template.with_suffix(".building")
            building.parent.mkdir(parents=True, exist_ok=True)
            building.unlink(missing_ok=True)
            # Any call opens the store, which creates and migrates the schema.
            MlflowClient(tracking_uri=f"sqlite:///{building}").search_experiments()
            building.rename(template)
    return template


def fresh_store(folder: Path) -> str:
    """The tracking URI of a store in ``folder`` (a copy of the template unless one is there)."""
    store = Path(folder) / STORE_FILE
    if not store.exists():
        store.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(template_path(), store)
    return f"sqlite:///{store}"


def remove_template() -> None:
    """Delete this process's template (at the end of the test session)."""
    shutil.rmtree(TEMPLATE_ROOT / str(os.getpid()), ignore_errors=True)

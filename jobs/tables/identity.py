"""What a config and prompt produce results as: the one place a run's effective settings, its
fingerprint and its result scope are decided. Describe, status, review, compare, audit,
``--explain`` and the preflight all go through ``identify_run``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jobs.config import DescribeConfig
from jobs.tables.results import ResultScope
from udfs.engines.model_files import local_model_revision
from udfs.fingerprint import run_fingerprint
from udfs.prompts import PromptSpec
from udfs.settings import EngineSettings, SamplingSettings


@dataclass(frozen=True)
class RunIdentity:
    """What a config and prompt produce results as: the engine (with a known revision), the
    effective sampling, the run fingerprint, and the result scope they belong to."""

    engine: EngineSettings
    sampling: SamplingSettings
    fingerprint: str
    scope: ResultScope


def identify_run(config: DescribeConfig, prompt: PromptSpec) -> RunIdentity:
    """The one place a run's effective settings are decided: the config's sampling fields over
    the prompt's own, field by field, and the engine with its weights revision known. Describe,
    status, review, compare, audit and ``--explain`` all go through it."""
    engine = with_known_revision(config.engine)
    sampling = config.sampling.over(prompt.sampling)
    return RunIdentity(
        engine=engine, sampling=sampling,
        fingerprint=run_fingerprint(prompt, sampling, engine, config.images),
        scope=ResultScope(config.results_table, prompt.name, prompt.version,
                          engine.recorded_model_id),
    )


def with_known_revision(engine: EngineSettings) -> EngineSettings:
    """``engine`` with ``revision`` filled in for a local model folder (a hash of its config
    files and weight file sizes), so a rebuilt or swapped model changes the fingerprint."""
    if engine.revision is not None or not Path(engine.model).is_dir():
        return engine
    return engine.model_copy(update={"revision": local_model_revision(Path(engine.model))})

"""``candid describe --explain``: the configuration a describe run would use, as YAML, before
any GPU-hour is spent and without starting Spark.

It shows what the config file and ``--set`` overrides add up to once merged with the prompt:
the prompt's name, version and hash; the effective sampling (the prompt's own, with the config's
fields over it) and which of its fields the config set; the engine (with the weights revision a
local model folder gets), image and feeding settings; and the run fingerprint with every input
it hashes. Everything comes from ``jobs.tables.identity.identify_run``, the function the run
itself uses, so what is shown is what runs.
"""

from __future__ import annotations

from typing import Any

import yaml

from jobs.config import DescribeConfig
from jobs.tables.identity import identify_run
from udfs.fingerprint import fingerprint_inputs
from udfs.prompts import PromptSpec


def explain(config: DescribeConfig, prompt: PromptSpec) -> dict[str, Any]:
    """The effective configuration of a describe run of ``config`` with ``prompt``."""
    identity = identify_run(config, prompt)
    engine = identity.engine.model_dump(mode="json")
    for backend in ("vllm", "transformers"):
        if engine[backend] is None:  # the backend not selected has no settings
            del engine[backend]
    return {
        "prompt": {
            "name": prompt.name, "version": prompt.version, "hash": prompt.content_hash(),
            "source": config.prompt.uri or config.prompt.dir,
        },
        "sampling": identity.sampling.model_dump(mode="json"),
        "sampling_set_by_config": sorted(config.sampling.given()),
        "engine": engine,
        "images": config.images.model_dump(mode="json"),
        "feeding": {
            "batch_size": config.batch_size, "prep_threads": config.prep_threads,
            "max_waiting_images": config.max_waiting_images, "partitions": config.partitions,
            "chunk_size": config.chunk_size,
        },
        "tables": {
            "input": config.input_table, "results": config.results_table,
            "scope": identity.scope.key, "replace": config.replace,
        },
        "fingerprint": {
            "value": identity.fingerprint,
            "inputs": fingerprint_inputs(prompt, identity.sampling, identity.engine,
                                         config.images),
        },
    }


def explain_text(config: DescribeConfig, prompt: PromptSpec) -> str:
    """``explain`` as YAML, sections in the order above."""
    return yaml.safe_dump(
        explain(config, prompt), sort_keys=False, allow_unicode=True, width=100
    ).rstrip("\n")

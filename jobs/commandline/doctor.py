"""``candid doctor --config F``: the preflight's command, and the driver part that ``candid
describe`` runs before Spark starts (``jobs/cluster/doctor.py`` has the checks)."""

from __future__ import annotations

import argparse

from jobs.commandline.commands import Context, Handler, add_config_args, config_from
from jobs.config import ConfigError, DescribeConfig


def add_doctor_command(sub: argparse._SubParsersAction) -> None:
    doctor = sub.add_parser(
        "doctor", help="preflight on the driver and in a task per executor slot: versions, "
        "CUDA and driver, GPU memory, compiler, model revision, caches, MLflow; exit 2 on a "
        "blocker",
    )
    add_config_args(doctor)


def _cmd_doctor(args: argparse.Namespace, context: Context) -> int:
    from jobs.cluster.doctor import (
        BLOCKER,
        EXIT_BLOCKER,
        all_findings,
        driver_facts,
        executor_facts,
    )
    from udfs.engines.vllm_env import prepare_process_env

    config = config_from(args)
    prepare_process_env()
    driver = driver_facts(config)
    executors = executor_facts(context.spark(config.spark), config)
    findings = all_findings(config, driver, executors)
    for finding in findings:
        context.say(finding.line())
    blockers = sum(f.level == BLOCKER for f in findings)
    context.say(f"{blockers} blocker(s) in {len(findings)} finding(s) from the driver and "
                f"{len(executors)} executor task(s)")
    return EXIT_BLOCKER if blockers else 0


def refuse_on_driver_blockers(config: DescribeConfig, context: Context) -> None:
    """``candid describe``'s preflight before Spark starts: raise ``ConfigError`` (exit 2)
    naming every blocker the driver can see. Skipped for an injected engine (a test seam),
    whose "model" is not a model."""
    if context.make_engine is not None:
        return
    from jobs.cluster.doctor import BLOCKER, driver_facts, driver_findings

    blockers = [f for f in driver_findings(config, driver_facts(config)) if f.level == BLOCKER]
    if blockers:
        raise ConfigError("preflight: " + "; ".join(f"{f.check}: {f.text}" for f in blockers)
                          + " (candid doctor --config F checks the executors too)")


DOCTOR_COMMANDS: dict[str, Handler] = {"doctor": _cmd_doctor}

"""Checks on every model output. Each guardrail is a small pure function with a stable id that
returns True when the output breaks a rule; a row's ``guardrail_flags`` lists the ids that fired.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from udfs.prompts import PromptSpec


@dataclass(frozen=True)
class OutputUnderCheck:
    text: str
    finish_reason: str
    prompt: PromptSpec


Check = Callable[[OutputUnderCheck], bool]


def _empty_output(out: OutputUnderCheck) -> bool:
    return not out.text.strip()


def _truncated(out: OutputUnderCheck) -> bool:
    return out.finish_reason == "length"


GUARDRAILS: dict[str, Check] = {
    "empty_output": _empty_output,
    "truncated": _truncated,
}


def evaluate(text: str, finish_reason: str, prompt: PromptSpec) -> list[str]:
    """Ids of the prompt's guardrails that fire on this output, in the prompt's order."""
    out = OutputUnderCheck(text=text, finish_reason=finish_reason, prompt=prompt)
    return [gid for gid in prompt.guardrails if gid in GUARDRAILS and GUARDRAILS[gid](out)]

"""Inference engines behind one interface (``Engine``): vLLM (production) and transformers."""

from udfs.engines.base import Engine, EngineDeadError, Generation
from udfs.engines.registry import create_engine

__all__ = ["Engine", "EngineDeadError", "Generation", "create_engine"]

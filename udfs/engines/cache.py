"""One engine per Python worker, reused across batches, tasks and Spark actions.

Caveats (the same ones ``pyspark.ml.functions.predict_batch_udf`` documents):

- The cache lives in this importable module, not in a driver script: a cache defined in
  ``__main__`` is pickled afresh with every task, so every task would build a new engine.
- It needs ``spark.python.worker.reuse=true`` (Spark's default); otherwise each task starts a
  fresh worker and a fresh engine.
- Spark kills Python workers that are idle for about a minute after an action ends; the next
  action builds the engine again. Plan long jobs as few large actions.
- Only one engine of the registry's (``udfs.engines.registry``: the real models) is kept:
  asking for another configuration shuts the current one down first, so a worker never holds
  two models in (GPU) memory. Engines from an injected factory (``make_engine``: test fakes)
  take a second slot, also of one: they neither evict the real engine nor pile up.
"""

from __future__ import annotations

import atexit
import threading
from collections.abc import Callable

from udfs.engines.base import Engine
from udfs.engines.registry import create_engine
from udfs.settings import EngineSettings, ImageSettings

EngineFactory = Callable[[EngineSettings, ImageSettings], Engine]

_lock = threading.Lock()
_engines: dict[str, Engine] = {}
_builds: dict[str, int] = {}
_atexit_registered = False


def cache_key(
    settings: EngineSettings, image_settings: ImageSettings, factory: EngineFactory | None = None
) -> str:
    """One entry per factory and settings. A factory is named by where it is defined: the
    executors unpickle a new function object for every task, so its identity cannot be used."""
    made_by = _name(factory or create_engine)
    return f"{made_by}|{settings.stable_hash()}|{image_settings.stable_hash()}"


def _slot(key: str) -> str:
    """Which one-engine slot a cache key holds: the registry's, or the injected factories'."""
    return "registry" if key.startswith(f"{_name(create_engine)}|") else "injected"


def _name(factory: EngineFactory) -> str:
    return f"{factory.__module__}:{getattr(factory, '__qualname__', repr(factory))}"


def get_engine(
    settings: EngineSettings, image_settings: ImageSettings, factory: EngineFactory | None = None
) -> Engine:
    """The worker's engine for these settings, built on first use."""
    global _atexit_registered
    key = cache_key(settings, image_settings, factory)
    with _lock:
        engine = _engines.get(key)
        if engine is not None:
            return engine
        for other in [k for k in _engines if _slot(k) == _slot(key)]:
            _engines.pop(other).shutdown()
        engine = (factory or create_engine)(settings, image_settings)
        _engines[key] = engine
        _builds[key] = _builds.get(key, 0) + 1
        if not _atexit_registered:
            atexit.register(shutdown_all)
            _atexit_registered = True
        return engine


def discard_engine(
    settings: EngineSettings, image_settings: ImageSettings, factory: EngineFactory | None = None
) -> None:
    """Shut down and forget the engine for these settings (after a fatal error)."""
    key = cache_key(settings, image_settings, factory)
    with _lock:
        engine = _engines.pop(key, None)
    if engine is not None:
        engine.shutdown()


def builds(
    settings: EngineSettings, image_settings: ImageSettings, factory: EngineFactory | None = None
) -> int:
    """How many times this worker built an engine for these settings (for metrics and tests)."""
    return _builds.get(cache_key(settings, image_settings, factory), 0)


def shutdown_all() -> None:
    """Shut every cached engine down; runs at interpreter exit."""
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.shutdown()

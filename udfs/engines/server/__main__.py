"""``python -m udfs.engines.server``: run an engine server (``udfs.engines.server.host``).

A separate entry point so that ``host`` is imported under its own name in the server, as
everywhere else (run as ``-m udfs.engines.server.host`` it would be ``__main__``, a second copy
with state of its own)."""

from udfs.engines.server.host import main

if __name__ == "__main__":
    main()

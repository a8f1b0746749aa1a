"""Engine servers: one engine process per (executor, GPU) slot on a node, reached by the tasks
of that GPU over a Unix socket (``client``), hosting the same engines and streams a Python
worker would (``host``), with the wire format and addresses both share (``protocol``). Why this
placement, and what it guarantees: docs/CLUSTER.md."""

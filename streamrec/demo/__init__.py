"""``streamrec live``: held-out sessions replayed through Kafka, the worker, Redis and the gRPC server,
each answer scored against the click that really came next (``live``), run against the stack (``run``),
shown as it happens (``view``). Nothing is imported here: the command line imports this package on
every run to register ``commands``.
"""

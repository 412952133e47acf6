"""Local infrastructure: a real Kafka broker (KRaft) and a real redis-server on loopback.

``manager`` starts, stops and checks both (``streamrec infra``, in ``commands``). Nothing is imported
here: the command line imports this package on every run to register its commands.
"""

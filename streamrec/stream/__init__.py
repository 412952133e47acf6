"""The session processor: a Faust app that keeps each session's recent items in Redis.

``worker`` runs it (``run_worker``, ``build_worker_app``); ``commands`` holds the stream's commands.
Nothing is imported here: the command line imports this package on every run, and Faust is slow to load.
"""

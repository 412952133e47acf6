"""Offline jobs that build the two-stage pipeline: fit or load its generators on a split
(``assemble``), train the ranker on candidate lists (``ranker_fit``), run the acceptance
experiment (``experiment``) and publish the ranker (``ranker_job``, ``streamrec train-ranker``).

The serving path itself lives in ``streamrec.rank``; nothing there imports this package.
"""

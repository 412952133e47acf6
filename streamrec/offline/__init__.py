"""Offline jobs, above the serving path: train and publish the sequence models (``train_job``,
``streamrec train``), fit or load the pipeline's generators on a split (``assemble``), train the
ranker on candidate lists (``ranker_fit``), run the acceptance experiment (``experiment``) and
publish the ranker (``ranker_job``, ``streamrec train-ranker``). ``commands`` registers those
commands and ``streamrec evaluate``.

The serving path itself lives in ``streamrec.rank``; nothing there imports this package.
"""

"""The serving path of the two-stage recommender: the candidate union of every generator's top-N
(``candidates``), the pair features (``features``), the ranker's scores (``pipeline``; DeepFM's
folded form in ``folded``) and the re-ranking rules (``rerank``). What ``streamrec evaluate``
measures and what the server answers both go through ``Pipeline``. The offline jobs that fit it
live in ``streamrec.offline``.
"""

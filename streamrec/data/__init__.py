"""Datasets: which exist (``names``), loading any of them (``datasets``), MovieLens (``movielens``),
snapshots of the event archive (``snapshots``), the shape they share in memory (``base``) and on
disk (``cache``), and replaying one as a click stream (``replay``).

Nothing is imported here, so ``streamrec.data.names`` stays cheap to import (the CLI reads it).
"""

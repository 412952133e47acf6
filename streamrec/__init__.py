"""streamrec: a streaming, real-time, session-based recommender."""

__version__ = "0.1.0"

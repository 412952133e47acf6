"""Retraining: snapshots of the event archive, the promotion gate, releases, rollback and warm starts."""

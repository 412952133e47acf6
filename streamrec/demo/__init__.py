"""``streamrec live``: held-out sessions replayed through Kafka, the worker, Redis and the gRPC server,
each answer scored against the click that really came next (``live``), shown as it happens (``view``)."""

from streamrec.demo.live import LiveSession, Scoreboard, Step, StepResult
from streamrec.demo.run import LiveConfig, LivePlan, plan_live, run_live

__all__ = ["LiveConfig", "LivePlan", "LiveSession", "Scoreboard", "Step", "StepResult", "plan_live", "run_live"]

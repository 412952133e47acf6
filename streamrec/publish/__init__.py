"""Publishing click events to Kafka: from JSONL, stdin, or a dataset replay."""

from streamrec.publish.producer import EventProducer, PublishStats
from streamrec.publish.sources import dataset_events, jsonl_lines

__all__ = ["EventProducer", "PublishStats", "dataset_events", "jsonl_lines"]

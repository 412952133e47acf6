"""Click events: the wire schema and its strict parser."""

from streamrec.events.schema import EVENT_TYPES, ClickEvent, EventLimits, encode_event, parse_event

__all__ = ["EVENT_TYPES", "ClickEvent", "EventLimits", "encode_event", "parse_event"]

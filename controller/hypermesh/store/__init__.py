"""The state store: desired state, inventory, last-applied configuration, status and events."""

from hypermesh.store.lock import StateLock
from hypermesh.store.store import ControllerState, Event, ResourceRecord, StateStore

__all__ = ["ControllerState", "Event", "ResourceRecord", "StateLock", "StateStore"]

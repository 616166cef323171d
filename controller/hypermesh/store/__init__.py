"""The state store: desired state, inventory, last-applied configuration, status and events."""

from hypermesh.store.lock import StateLock
from hypermesh.store.store import Event, ResourceRecord, StateStore

__all__ = ["Event", "ResourceRecord", "StateLock", "StateStore"]

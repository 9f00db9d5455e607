"""How a command reaches a head node: one interface, backends chosen by URL."""

from transport.base import Command, CommandResult, Transport
from transport.errors import (
    HeadNodeNotFound,
    OutputTooLarge,
    RequestTooLarge,
    TransportError,
    TransportThrottled,
    TransportTimeout,
    TransportUnavailable,
    UnsafeParameter,
)
from transport.registry import open_transport, register_backend

__all__ = [
    "Command",
    "CommandResult",
    "HeadNodeNotFound",
    "OutputTooLarge",
    "RequestTooLarge",
    "Transport",
    "TransportError",
    "TransportThrottled",
    "TransportTimeout",
    "TransportUnavailable",
    "UnsafeParameter",
    "open_transport",
    "register_backend",
]

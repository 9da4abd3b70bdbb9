"""Test helpers: an OpenAI-compatible stub model server with scripted faults."""

from .stub_server import MODES, StubServer, unused_port

__all__ = ["MODES", "StubServer", "unused_port"]

"""Who acts: scripted probes, OpenAI-compatible model servers, the embedded local model."""

from .resolve import resolve_policy
from .scripted import NoopPolicy, OraclePolicy, RandomPolicy

__all__ = ["NoopPolicy", "OraclePolicy", "RandomPolicy", "resolve_policy"]

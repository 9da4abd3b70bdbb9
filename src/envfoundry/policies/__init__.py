"""Who acts: scripted probes, OpenAI-compatible model servers, the embedded local model."""

from .openai import OpenAIPolicy, RetryConfig, SamplingOptions
from .resolve import resolve_policy
from .scripted import NoopPolicy, OraclePolicy, RandomPolicy

__all__ = [
    "NoopPolicy", "OpenAIPolicy", "OraclePolicy", "RandomPolicy", "RetryConfig", "SamplingOptions",
    "resolve_policy",
]

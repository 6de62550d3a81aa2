"""Switchyard: a model-agnostic LLM gateway with an OpenAI-compatible front door."""

__version__ = "0.1.0"

"""Fake upstream servers and helpers for Switchyard's tests: real HTTP servers on free ports, no mocks."""

from .anthropic_upstream import ANTHROPIC_TEST_KEY, AnthropicUpstream
from .base import FakeUpstream
from .faults import FAULT_PARAMETERS, Fault
from .openai_upstream import OpenAIUpstream
from .polling import async_wait_until, wait_until
from .replies import choice_text, count_words, embedding_vector, reply_text, split_pieces
from .wire import RecordedRequest, UpstreamRejection

__all__ = [
    "ANTHROPIC_TEST_KEY",
    "FAULT_PARAMETERS",
    "AnthropicUpstream",
    "Fault",
    "FakeUpstream",
    "OpenAIUpstream",
    "RecordedRequest",
    "UpstreamRejection",
    "async_wait_until",
    "choice_text",
    "count_words",
    "embedding_vector",
    "reply_text",
    "split_pieces",
    "wait_until",
]

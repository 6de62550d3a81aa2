"""The public API as an OpenAPI 3.1 document, served at GET /openapi.json.

Request bodies state exactly what gateway/accept.py checks (and no more: every other field is passed
through for the upstream to judge), so a client, or a fuzzer, can trust that a body valid here gets
past the gateway's own checks, and one invalid here gets a 400. tests/test_openapi_schemathesis.py
holds the two to each other.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.accept import INTEGER_FIELDS, MAX_CHOICES, NUMBER_FIELDS

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF + name}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


_ERROR = {
    "type": "object",
    "description": "OpenAI's error object: every 4xx and 5xx of the gateway has this body.",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "additionalProperties": False,
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}

# Tokens, or arrays of them, as /v1/completions and /v1/embeddings take them besides text.
_TEXTS_OR_TOKENS = {
    "type": "array",
    "minItems": 1,
    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "array"}]},
}

_CONTENT_PART = {
    "description": "A content part; a `text` part needs its text as a string.",
    "anyOf": [
        {
            "type": "object",
            "required": ["type", "text"],
            "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
        },
        {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"type": "string", "not": {"const": "text"}}},
        },
    ],
}

_MESSAGE = {
    "type": "object",
    "required": ["role"],
    "properties": {
        "role": {"type": "string"},
        "content": {
            "anyOf": [{"type": "string"}, {"type": "array", "items": _ref("ContentPart")}, {"type": "null"}],
        },
    },
}


def _common_fields(streams: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "model": {"type": "string", "minLength": 1, "description": "A model alias or target the API key may use."},
        "stream": {"type": ["boolean", "null"]} if streams else {"enum": [False, None], "description": "Not streamable."},
        "stream_options": {"type": ["object", "null"]},
        "n": _nullable({"type": "integer", "minimum": 1, "maximum": MAX_CHOICES}),
    }
    fields.update({name: {"type": ["integer", "null"]} for name in INTEGER_FIELDS})
    fields.update({name: {"type": ["number", "null"]} for name in NUMBER_FIELDS})
    return fields


def _request(required: list[str], streams: bool = True, **fields: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "description": "Fields not listed here are passed to the upstream as sent.",
        "required": ["model", *required],
        "properties": {**_common_fields(streams), **fields},
        "additionalProperties": True,
    }


_SCHEMAS = {
    "Error": _ERROR,
    "ContentPart": _CONTENT_PART,
    "ChatMessage": _MESSAGE,
    "ChatRequest": _request(["messages"], messages={"type": "array", "minItems": 1, "items": _ref("ChatMessage")}),
    "CompletionRequest": _request(["prompt"], prompt={"anyOf": [{"type": "string"}, _TEXTS_OR_TOKENS]}),
    "EmbeddingRequest": _request(
        ["input"], streams=False, input={"anyOf": [{"type": "string", "minLength": 1}, _TEXTS_OR_TOKENS]}
    ),
    "Completion": {
        "type": "object",
        "description": "The upstream's reply, OpenAI-shaped.",
        "required": ["object", "choices"],
        "properties": {"id": {"type": "string"}, "object": {"type": "string"}, "choices": {"type": "array"}},
    },
    "Event": {
        "type": "object",
        "description": "One server-sent event of a stream (`stream: true`): a JSON chunk as `data`, or `[DONE]` last.",
        "required": ["data"],
        "properties": {"data": {"type": "string"}},
    },
    "EmbeddingList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {"object": {"const": "list"}, "data": {"type": "array", "items": {"type": "object"}}},
    },
    "ModelList": {
        "type": "object",
        "required": ["object", "data"],
        "properties": {
            "object": {"const": "list"},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "object", "owned_by"],
                    "properties": {"id": {"type": "string"}, "object": {"const": "model"}, "owned_by": {"type": "string"}},
                },
            },
        },
    },
    "Health": {
        "type": "object",
        "required": ["status"],
        "properties": {"status": {"type": "string"}, "reason": {"type": "string"}},
    },
}

_ERRORS = {
    status: {"description": "An OpenAI-shaped error.", "content": {"application/json": {"schema": _ref("Error")}}}
    for status in ("4XX", "5XX")
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}


def _generation(summary: str, request: str, reply: str, streams: bool = True) -> dict[str, Any]:
    ok = _json(reply, "The upstream's reply.")
    if streams:
        ok["content"]["text/event-stream"] = {"schema": _ref("Event")}
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(request)}}},
            "responses": {"200": ok, **_ERRORS},
        }
    }


def _probe(summary: str, ready: bool) -> dict[str, Any]:
    responses = {"200": _json("Health", "Serving.")}
    if ready:
        responses["503"] = _json("Health", "Not ready: starting, draining, or Redis unreachable with fail_closed.")
    return {"get": {"summary": summary, "security": [], "responses": {**_ERRORS, **responses}}}


def _version() -> str:
    try:
        return version("switchyard")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "0"


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Switchyard",
            "version": _version(),
            "description": "An OpenAI-compatible LLM gateway. Errors use OpenAI's error object.",
        },
        "paths": {
            "/v1/chat/completions": _generation("Chat completion", "ChatRequest", "Completion"),
            "/v1/completions": _generation("Text completion", "CompletionRequest", "Completion"),
            "/v1/embeddings": _generation("Embeddings", "EmbeddingRequest", "EmbeddingList", streams=False),
            "/v1/models": {
                "get": {
                    "summary": "The models this API key may use",
                    "security": [{"bearer": []}],
                    "responses": {"200": _json("ModelList", "Models."), **_ERRORS},
                }
            },
            "/healthz": _probe("Liveness", ready=False),
            "/readyz": _probe("Readiness", ready=True),
        },
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A tenant's API key; the `api-key` and `x-api-key` headers are accepted too.",
                }
            },
        },
    }


def openapi_route() -> Route:
    body = orjson.dumps(document())  # once per process: the document never changes while it runs

    async def openapi(request: Request) -> Response:
        return Response(body, media_type="application/json")

    return Route("/openapi.json", openapi, methods=["GET"])

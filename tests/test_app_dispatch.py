"""The ASGI entry (gateway/app.py Dispatch): pipeline POSTs go straight to the pipeline, the rest through
Starlette; either way an error is OpenAI-shaped JSON, a bug included."""

from __future__ import annotations

import httpx
import pytest

from gateway.app import create_app
from gateway.pipeline import Pipeline
from gateway.settings import demo_settings


@pytest.fixture
def client():
    app = create_app(demo_settings())
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


async def test_a_bug_in_the_pipeline_is_a_json_500_without_details(client, monkeypatch):
    async def broken(self, scope, receive, send, endpoint):
        raise RuntimeError("secret detail sk-should-not-leak")

    monkeypatch.setattr(Pipeline, "handle", broken)
    async with client:
        reply = await client.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert reply.status_code == 500
    assert reply.json()["error"]["code"] == "internal_error"
    assert "sk-should-not-leak" not in reply.text


async def test_other_paths_and_methods_still_get_starlette_routing(client):
    async with client:
        wrong_method = await client.get("/v1/chat/completions")
        unknown = await client.post("/v1/nothing-here", json={})
    assert (wrong_method.status_code, wrong_method.json()["error"]["code"]) == (405, "method_not_allowed")
    assert len(wrong_method.headers["x-request-id"]) == 24 and wrong_method.headers["x-switchyard-target"] == "none"
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "unknown_url")

"""The gateway against its own OpenAPI document, fuzzed by schemathesis: no 5xx, every response as documented,
every error OpenAI-shaped, and every body the document calls invalid refused with a 4xx.

`make test` runs a few deterministic examples per operation; `make fuzz` runs many random ones.
"""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from hypothesis import given
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from fakes.fuzzing import fuzz_settings
from fakes.keys import make_key

KEY, KEY_HASH = make_key("acme")
OPERATIONS = [
    ("/v1/chat/completions", "POST"),
    ("/v1/completions", "POST"),
    ("/v1/embeddings", "POST"),
    ("/v1/models", "GET"),
    ("/healthz", "GET"),
    ("/readyz", "GET"),
]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from fakes.gateway_process import echo_gateway

    with echo_gateway(tmp_path_factory.mktemp("openapi"), KEY_HASH) as process:
        yield process


@pytest.fixture(scope="module")
def schema(gateway):
    return schemathesis.openapi.from_url(gateway.base_url + "/openapi.json")


def openai_error_shape(ctx, response, case) -> None:
    """Every 4xx and 5xx is OpenAI's error object, as JSON: what the SDKs parse."""
    if response.status_code < 400:
        return
    assert response.headers.get("content-type", [""])[0].startswith("application/json"), response.headers
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and isinstance(error["message"], str)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    openai_error_shape,
]


def name_a_served_model(case) -> None:
    """A generated model name is almost never one the key may use (a 4xx); a valid one becomes `echo`, which it may."""
    if isinstance(case.body, dict) and isinstance(case.body.get("model"), str) and case.body["model"]:
        case.body["model"] = "echo"


def test_the_document_lists_the_public_api(gateway, schema):
    status, headers, _ = gateway.http_get("/openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    listed = {(op.ok().path, op.ok().method.upper()) for op in schema.get_all_operations()}
    assert listed == set(OPERATIONS)


@pytest.mark.parametrize(("path", "method"), OPERATIONS)
def test_valid_requests_are_served_as_documented(gateway, schema, path, method):
    operation = schema[path][method]
    auth = {"Authorization": f"Bearer {KEY}"}

    @fuzz_settings(short=15, long=1000)
    @given(case=operation.as_strategy(GenerationMode.POSITIVE), known_model=st.booleans())
    def run(case, known_model):
        if known_model:
            name_a_served_model(case)
        case.call_and_validate(base_url=gateway.base_url, headers=auth, checks=CHECKS)

    run()


@pytest.mark.parametrize(("path", "method"), [op for op in OPERATIONS if op[1] == "POST"])
def test_invalid_requests_get_an_openai_4xx(gateway, schema, path, method):
    operation = schema[path][method]
    auth = {"Authorization": f"Bearer {KEY}"}

    @fuzz_settings(short=25, long=2000)
    @given(case=operation.as_strategy(GenerationMode.NEGATIVE))
    def run(case):
        name_a_served_model(case)  # so that a 4xx is the invalid field's, not the model's
        case.call_and_validate(base_url=gateway.base_url, headers=auth, checks=[*CHECKS, negative_data_rejection])

    run()


@pytest.mark.parametrize(("path", "method"), [op for op in OPERATIONS if op[0].startswith("/v1/")])
def test_requests_without_a_key_get_a_401(gateway, schema, path, method):
    operation = schema[path][method]

    @fuzz_settings(short=5, long=200)
    @given(case=operation.as_strategy(GenerationMode.POSITIVE))
    def run(case):
        response = case.call(base_url=gateway.base_url)
        case.validate_response(response, checks=CHECKS)
        assert response.status_code == 401, response.text

    run()

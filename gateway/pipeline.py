"""The request path, in the order every request takes it.

    accept → authenticate → inspect → decide → limit → send → respond → record

Each step lives in its own module with one job; this file only wires them in order.
Inspect (gateway/safety/engine.py) scans before decide so routes can match on what it found; the
PII actions it prescribes apply once the route is known (a `keep_pii` route gets the body as sent).
Limit (gateway/limit.py) comes after decide, because a route can carry limits of its own, and
checks them all in one call. That call is started before inspect, on the route presumed from what
is known then, so its Redis round trip runs during the scan; limit takes its verdict if the final
route has the same limits, and errors keep the order above. Record (observability/recorder.py) runs
once per request, whatever the outcome, after the last byte; what the request used is then settled
with its limits.
"""

from __future__ import annotations

import asyncio
from typing import Any

from adapters.base import Endpoint, UpstreamRequest
from gateway.accept import ClientGone, parse_request, read_body
from gateway.errors import GatewayError
from gateway.exchange import Exchange, request_id_from
from gateway.respond import send_error, send_reply, send_stream
from gateway.runtime import Runtime
from gateway.send import Sender
from observability.recorder import Recorder
from policies.conditions import RequestFacts


class Pipeline:
    def __init__(self, runtime: Runtime, recorder: Recorder) -> None:
        self.runtime = runtime
        self.recorder = recorder
        self.sender = Sender(runtime.adapters, runtime.breakers)
        self.limiter = runtime.limiter
        runtime.limiter.report_to(recorder.ratelimit_rejected, recorder.redis_up, recorder.limits_degraded)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any, endpoint: Endpoint) -> None:
        headers = dict(scope["headers"])
        exchange = Exchange(endpoint, request_id_from(headers.get(b"x-request-id")))
        self.recorder.begin(exchange, headers)
        try:
            await self._serve(receive, send, endpoint, headers, exchange)
        except asyncio.CancelledError:
            exchange.status = exchange.status or 499  # the server stopped the request
            raise
        finally:
            # record: once per request, answered or not, after the last byte of a stream
            self.recorder.record(exchange)
            self.limiter.settle(exchange)  # after record: a stream's usage and cost are final only then

    async def _serve(
        self, receive: Any, send: Any, endpoint: Endpoint, headers: dict[bytes, bytes], exchange: Exchange
    ) -> None:
        runtime = self.runtime
        try:
            # accept + authenticate: who is asking, before reading what they ask
            tenant = runtime.authenticator.authenticate(headers)
            exchange.tenant = tenant.name
            raw = await read_body(receive, headers, runtime.max_body_bytes)
            request = parse_request(endpoint, raw)
            exchange.model = request.model
            # decide
            router = runtime.router  # one policy version for the whole request, even across a reload
            safety = runtime.safety  # swapped together with the router
            exchange.policy_version = runtime.policy.version
            if not tenant.may_use(request.model):
                raise _model_not_allowed(request.model)
            facts = RequestFacts(request.model, tenant.name, endpoint.value, request.stream, headers, request.body)
            presumed = router.presume(facts)  # as if the scan finds nothing
            self.limiter.reserve(tenant, presumed.decision, facts, exchange)  # runs during the scan
            # inspect: what the request carries, before deciding where it may go
            screening = await safety.inspect(request.body, tenant.key_id, exchange)
            facts.pii_entities, facts.safety_flags = screening.pii_entities, screening.flags
            decision = presumed.final(facts)
            if decision is None:
                raise _model_not_found(request.model)
            exchange.route = decision.route
            if decision.deny is not None:
                raise GatewayError(403, decision.deny, code="denied_by_policy")
            decision = runtime.screen.apply(decision, tenant.name, facts)
            body = screening.body_for(request.body, decision.keep_pii, exchange)  # redacted unless kept in house
            # limit
            await self.limiter.admit(tenant, decision, facts, exchange)
            # send
            upstream = UpstreamRequest(endpoint, body, request.stream, request.client_wants_usage)
            reply = await self.sender.send(upstream, decision, exchange)
            if screening.redactor is not None:  # `responses: redact`: PII in the model's output (a failed scan: 503)
                await screening.redact(reply, exchange)
        except GatewayError as error:
            await send_error(send, exchange, error)
            return
        except ClientGone:
            exchange.status = 499
            return
        # respond
        screening.restore(reply)  # pseudonymized values back in, for the client only
        self.recorder.answered(exchange, reply, request.body)
        if reply.events is None:
            await send_reply(send, exchange, reply)
        else:
            await send_stream(send, receive, exchange, reply)


def _model_not_allowed(model: str) -> GatewayError:
    # Any model outside a restricted tenant's list, whether it exists or not: the tenant cannot probe
    # which models other tenants have.
    message = f"This API key may not use model {model[:200]!r}."
    return GatewayError(403, message, code="model_not_allowed", param="model")


def _model_not_found(model: str) -> GatewayError:
    message = f"The model {model[:200]!r} does not exist or you do not have access to it."
    return GatewayError(404, message, code="model_not_found", param="model")

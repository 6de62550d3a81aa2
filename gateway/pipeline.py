"""The request path, in the order every request takes it.

    accept → authenticate → decide → send → respond

Each step lives in its own module with one job; this file only wires them in order. Rate limits
(limit) and safety filters (inspect) slot in between authenticate and decide.
"""

from __future__ import annotations

from typing import Any

from adapters.base import Endpoint, UpstreamRequest
from gateway.accept import ClientGone, parse_request, read_body
from gateway.errors import GatewayError
from gateway.exchange import Exchange, request_id_from
from gateway.respond import send_error, send_reply, send_stream
from gateway.runtime import Runtime
from gateway.send import Sender
from policies.conditions import RequestFacts


class Pipeline:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.sender = Sender(runtime.adapters, runtime.breakers)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any, endpoint: Endpoint) -> None:
        runtime = self.runtime
        headers = dict(scope["headers"])
        exchange = Exchange(endpoint, request_id_from(headers.get(b"x-request-id")))
        try:
            # accept + authenticate: who is asking, before reading what they ask
            tenant = runtime.authenticator.authenticate(headers)
            exchange.tenant = tenant.name
            raw = await read_body(receive, headers, runtime.max_body_bytes)
            request = parse_request(endpoint, raw)
            exchange.model = request.model
            # decide
            router = runtime.router  # one policy version for the whole request, even across a reload
            if not tenant.may_use(request.model):
                raise _not_allowed(request.model, router.knows(request.model))
            facts = RequestFacts(request.model, tenant.name, endpoint.value, request.stream, headers, request.body)
            decision = router.decide(facts)
            if decision is None:
                raise _not_allowed(request.model, known=False)
            exchange.route = decision.route
            if decision.deny is not None:
                raise GatewayError(403, decision.deny, code="denied_by_policy")
            # send
            upstream = UpstreamRequest(endpoint, request.body, request.stream, request.client_wants_usage)
            reply = await self.sender.send(upstream, decision, exchange)
        except GatewayError as error:
            await send_error(send, exchange, error)
            return
        except ClientGone:
            exchange.status = 499
            return
        # respond
        exchange.usage = reply.usage
        if reply.events is None:
            await send_reply(send, exchange, reply)
        else:
            await send_stream(send, receive, exchange, reply)


def _not_allowed(model: str, known: bool) -> GatewayError:
    shown = model[:200]
    if known:
        return GatewayError(403, f"This API key may not use model {shown!r}.", code="model_not_allowed", param="model")
    return GatewayError(404, f"The model {shown!r} does not exist.", code="model_not_found", param="model")

"""What validating tokens by introspection costs an ASGI app.

Many requests carrying a limited set of bearer tokens go through a small
ASGI app wrapped in `usersession.asgi.IntrospectionMiddleware`, whose
`Introspector` asks the development server's introspection endpoint (real
HTTP on 127.0.0.1). Printed side by side: the introspection calls made and
the calls per distinct token (1.00 is the target: one per token while its
answer is cached), then the time per request with a warm cache next to the
same app without validation, and their ratio.

    python benchmarks/introspection.py [--requests 10000] [--tokens 20]
        [--concurrency 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

import httpx

from usersession import Introspector, Provider
from usersession.asgi import IntrospectionMiddleware, claims_of
from usersession.devserver import DevServer

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """A tiny JSON endpoint: the subject when the token was checked."""
    if scope["type"] != "http":
        return
    claims = claims_of(scope)
    body = json.dumps({"sub": None if claims is None else claims.sub}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def drive(
    target: ASGIApp, tokens: Sequence[str], requests: int, concurrency: int
) -> float:
    """Send `requests` GETs through `target`, `concurrency` at a time, the
    tokens taken in turn; return the seconds it took."""
    transport = httpx.ASGITransport(app=target)
    headers = [{"Authorization": f"Bearer {token}"} for token in tokens]
    async with httpx.AsyncClient(
        transport=transport, base_url="http://127.0.0.1"
    ) as client:

        async def worker(first: int) -> None:
            for index in range(first, requests, concurrency):
                answer = await client.get(
                    "/items", headers=headers[index % len(headers)]
                )
                if answer.status_code != 200:
                    raise RuntimeError(f"request {index}: HTTP {answer.status_code}")

        started = time.perf_counter()
        await asyncio.gather(*(worker(first) for first in range(concurrency)))
        return time.perf_counter() - started


async def measure(options: argparse.Namespace) -> int:
    with DevServer(access_token_lifetime=3600.0) as dev:
        dev.add_client("bench-api", "bench-api-secret")
        provider = Provider(
            dev.token_endpoint,
            "bench-api",
            "bench-api-secret",
            introspection_endpoint=dev.introspection_endpoint,
        )
        tokens = [
            dev.login(f"user{i}", "read")["access_token"] for i in range(options.tokens)
        ]
        async with Introspector(provider, ttl=300.0) as introspector:
            guarded = IntrospectionMiddleware(app, introspector, scopes=["read"])
            # Cold: every token meets an empty cache, from many tasks at once.
            cold = await drive(guarded, tokens, options.requests, options.concurrency)
            calls = dev.stats().introspection_requests
            plain_times: list[float] = []
            guarded_times: list[float] = []
            for _ in range(options.rounds):
                plain_times.append(
                    await drive(app, tokens, options.requests, options.concurrency)
                )
                guarded_times.append(
                    await drive(guarded, tokens, options.requests, options.concurrency)
                )
            warm_calls = dev.stats().introspection_requests - calls

    per_request = 1e6 / options.requests
    plain = min(plain_times) * per_request
    checked = min(guarded_times) * per_request
    print(
        f"usersession introspection benchmark: {options.requests} requests over "
        f"{options.tokens} tokens, {options.concurrency} at a time, through an "
        "ASGI app (httpx ASGITransport);\nintrospection at the development "
        "server over HTTP on 127.0.0.1.\n"
    )
    rows = [
        ("introspection calls (cold run)", f"{calls}"),
        ("calls per distinct token", f"{calls / options.tokens:.2f}"),
        ("introspection calls (warm runs)", f"{warm_calls}"),
        ("cold run, per request", f"{cold * per_request:.1f} us"),
        ("without validation, per request", f"{plain:.1f} us"),
        ("with validation (warm), per request", f"{checked:.1f} us"),
        ("added per request", f"{checked - plain:.1f} us"),
        ("ratio to no validation", f"{checked / plain:.2f}x"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value:>10}")
    print(f"\n  (best of {options.rounds} warm rounds each, interleaved)")
    return 0 if calls == options.tokens and warm_calls == 0 else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=10000)
    parser.add_argument("--tokens", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args(argv)
    if min(options.requests, options.tokens, options.concurrency, options.rounds) < 1:
        parser.error("every count must be at least 1")
    return asyncio.run(measure(options))


if __name__ == "__main__":
    raise SystemExit(main())

"""The Starlette side of `usersession.asgi.require`.

No ``from __future__ import annotations`` here: FastAPI reads the
dependency's annotations at run time, so they must be real classes.
"""

from collections.abc import Awaitable, Callable

from ._errors import TokenCheckError
from ._guard import CLAIMS_KEY, Answer, Guard
from ._introspection import Claims

try:
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
except ImportError as exc:  # pragma: no cover - tested with starlette hidden
    raise ImportError(
        "usersession.asgi.require needs Starlette: pip install 'usersession[server]'"
    ) from exc

__all__ = ["dependency"]


def _exception(answer: Answer) -> HTTPException:
    headers = {name: value for name, value in answer.headers if name != "Content-Type"}
    return HTTPException(answer.status, detail=answer.detail, headers=headers)


def dependency(guard: Guard) -> Callable[[Request], Awaitable[Claims]]:
    """A coroutine function taking the request and returning its claims."""
    required = guard.required("GET", "")
    assert required is not None  # a fixed list of scopes, never a policy

    async def bearer_claims(request: Request) -> Claims:
        known = request.scope.get(CLAIMS_KEY)
        if isinstance(known, Claims):
            refusal = guard.scope_refusal(known, required)
            if refusal is not None:
                raise _exception(refusal)
            return known
        token = guard.token(request.headers.getlist("authorization"))
        if isinstance(token, Answer):
            raise _exception(token)
        try:
            return await guard.introspector.acheck(token, scopes=required)
        except TokenCheckError as exc:
            raise _exception(guard.refusal(exc)) from None

    return bearer_claims

"""The six edges of usersession, and one way to drive each of them.

An *edge* is one HTTP library as usersession plugs into it: httpx (sync and
async), httpx2 (sync and async), requests and aiohttp. Each `Edge` hides its
library's idioms (how a body is passed, how one request opts out of the
token, how redirects are followed, where a proxy goes) so that a conformance
test reads the same for all six and no adapter can drift from the contract.

Every session an edge opens ignores the environment (no proxy or netrc from
it) and is closed before the call that opened it returns.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import importlib
import io
import json
import tempfile
import threading
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, Protocol, TypeVar

import aiohttp
import httpx
import httpx2
import requests

import usersession
from usersession import User

#: Seconds any one request, thread or barrier may take before the suite calls
#: the library stuck. Generous: a loaded CI machine must not flake.
PATIENCE = 30.0

#: The multipart boundary of file uploads on the async httpx edges, fixed so
#: that the bytes on the wire are known in advance.
BOUNDARY = "usersession-conformance-boundary"

Headers = Sequence[tuple[str, str]]
BodyKind = Literal["bytes", "form", "json", "file", "stream"]

S = TypeVar("S")


# -- What a request gives back ---------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A response, the same shape whichever library produced it.

    Attributes:
        status: The final status code.
        history: Status codes of the earlier hops the library reports
            (redirects everywhere; the 401 before a resend where the library
            records it).
        headers: Header values by lower-case name.
        content: The body.
    """

    status: int
    history: tuple[int, ...]
    headers: Mapping[str, str]
    content: bytes

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is not JSON."""
        try:
            return json.loads(self.content)
        except ValueError:
            return None


Outcome = Answer | BaseException


def status_of(outcome: Outcome) -> int | str:
    """An outcome as its status code, or its error's class name."""
    return outcome.status if isinstance(outcome, Answer) else type(outcome).__name__


# -- Request bodies --------------------------------------------------------------


@dataclass(frozen=True)
class Body:
    """A request body, described once and passed to each library its own way.

    Build one with `raw`, `form`, `json`, `file` or `stream`. The body is
    made anew for every request sent with it (a file is opened, a generator
    started), so one `Body` serves any number of requests.
    """

    kind: BodyKind
    payload: bytes = b""
    fields: tuple[tuple[str, str], ...] = ()
    value: Any = None
    chunk_size: int = 65_536

    @classmethod
    def raw(cls, data: bytes) -> Body:
        """Bytes held in memory."""
        return cls("bytes", payload=data)

    @classmethod
    def form(cls, fields: Mapping[str, str]) -> Body:
        """A URL-encoded form."""
        return cls("form", fields=tuple(fields.items()))

    @classmethod
    def json(cls, value: Any) -> Body:
        """A JSON document."""
        return cls("json", value=value)

    @classmethod
    def file(cls, data: bytes) -> Body:
        """A seekable file opened on a temporary file holding `data`."""
        return cls("file", payload=data)

    @classmethod
    def stream(cls, data: bytes, chunk_size: int = 65_536) -> Body:
        """A one-shot stream yielding `data` in chunks: a generator (an async
        generator on the async edges)."""
        return cls("stream", payload=data, chunk_size=chunk_size)

    @property
    def form_fields(self) -> dict[str, str]:
        return dict(self.fields)

    def chunks(self) -> list[bytes]:
        size = self.chunk_size
        return [self.payload[i : i + size] for i in range(0, len(self.payload), size)]

    def sync_stream(self) -> Iterator[bytes]:
        yield from self.chunks()

    async def async_stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks():
            yield chunk

    @contextlib.contextmanager
    def opened_file(self) -> Iterator[io.BufferedReader]:
        """A file opened for reading on a temporary file holding the payload."""
        with tempfile.TemporaryDirectory(prefix="usersession-body-") as folder:
            path = Path(folder) / "upload.bin"
            path.write_bytes(self.payload)
            with path.open("rb") as file:
                yield file


@dataclass(frozen=True)
class Call:
    """One request of a sequence sent on one session (see `Edge.send_many`)."""

    method: str
    url: str
    headers: Headers | None = None
    body: Body | None = None
    without_token: bool = False
    follow_redirects: bool = True


# -- Edges -----------------------------------------------------------------------


class Edge(abc.ABC):
    """One HTTP library as usersession plugs into it."""

    name: ClassVar[str]
    is_async: ClassVar[bool]
    #: The usersession module this edge needs.
    module: ClassVar[str]

    def __repr__(self) -> str:
        return f"<edge {self.name}>"

    def missing(self) -> str | None:
        """Why this edge cannot run yet, or None when it can."""
        try:
            importlib.import_module(self.module)
        except ImportError as exc:
            return f"{self.module} does not import yet: {exc}"
        return None

    @abc.abstractmethod
    def send(
        self,
        user: User,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: Body | None = None,
        without_token: bool = False,
        follow_redirects: bool = True,
        proxy: str | None = None,
        allowed_origins: Sequence[str] | None = None,
    ) -> Answer:
        """One request from a session of this edge opened for it.

        Args:
            user: Whose token to send.
            method: The HTTP method.
            url: Where to.
            headers: Headers the caller sets.
            body: The request body.
            without_token: Send this one request without the token, the way
                this library lets a caller opt out.
            follow_redirects: Follow redirects (all libraries can).
            proxy: A plain-http forward proxy for every request of the session.
            allowed_origins: The session's allow-list of origins.

        Raises:
            Whatever the library's request call raises, usersession's errors
            included, unchanged.
        """

    @abc.abstractmethod
    def send_many(
        self,
        user: User,
        calls: Sequence[Call],
        *,
        proxy: str | None = None,
        allowed_origins: Sequence[str] | None = None,
    ) -> list[Outcome]:
        """The calls in order on one session; each one's answer or error."""

    @abc.abstractmethod
    def fire(
        self,
        user: User,
        n: int,
        url: str,
        *,
        clients: int = 1,
        method: str = "GET",
        body: Body | None = None,
    ) -> list[Outcome]:
        """`n` requests released at the same moment; each one's outcome.

        Sync edges send from `n` threads behind a barrier; async edges from
        `n` tasks on one event loop. The requests are spread over `clients`
        separate sessions of this edge, all bound to `user`.
        """

    @abc.abstractmethod
    def describe(self, user: User) -> list[str]:
        """``repr()`` and ``str()`` of a session of this edge for `user`, and
        of the auth objects it carries."""

    @abc.abstractmethod
    def wire_bytes(self, body: Body) -> bytes:
        """The bytes this library puts on the wire for `body`."""


class SyncEdge(Edge, Generic[S]):
    """An edge whose requests block the calling thread."""

    is_async = False

    @abc.abstractmethod
    def session(
        self,
        user: User,
        *,
        allowed_origins: Sequence[str] | None = None,
        proxy: str | None = None,
    ) -> contextlib.AbstractContextManager[S]:
        """A new session bound to `user`; closed when the context ends."""

    @abc.abstractmethod
    def request(
        self,
        session: S,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: Body | None = None,
        without_token: bool = False,
        follow_redirects: bool = True,
    ) -> Answer:
        """One request on an open session."""

    @abc.abstractmethod
    def _describe(self, session: S, user: User) -> list[str]: ...

    def send(
        self,
        user: User,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: Body | None = None,
        without_token: bool = False,
        follow_redirects: bool = True,
        proxy: str | None = None,
        allowed_origins: Sequence[str] | None = None,
    ) -> Answer:
        with self.session(user, allowed_origins=allowed_origins, proxy=proxy) as s:
            return self.request(
                s,
                method,
                url,
                headers=headers,
                body=body,
                without_token=without_token,
                follow_redirects=follow_redirects,
            )

    def send_many(
        self,
        user: User,
        calls: Sequence[Call],
        *,
        proxy: str | None = None,
        allowed_origins: Sequence[str] | None = None,
    ) -> list[Outcome]:
        outcomes: list[Outcome] = []
        with self.session(user, allowed_origins=allowed_origins, proxy=proxy) as s:
            for call in calls:
                try:
                    outcomes.append(self.call(s, call))
                except Exception as exc:
                    outcomes.append(exc)
        return outcomes

    def call(self, session: S, call: Call) -> Answer:
        """`request` for a `Call`."""
        return self.request(
            session,
            call.method,
            call.url,
            headers=call.headers,
            body=call.body,
            without_token=call.without_token,
            follow_redirects=call.follow_redirects,
        )

    def fire(
        self,
        user: User,
        n: int,
        url: str,
        *,
        clients: int = 1,
        method: str = "GET",
        body: Body | None = None,
    ) -> list[Outcome]:
        with contextlib.ExitStack() as stack:
            pool = [stack.enter_context(self.session(user)) for _ in range(clients)]
            return run_in_threads(
                [
                    _bind(self.request, pool[i % clients], method, url, body)
                    for i in range(n)
                ]
            )

    def describe(self, user: User) -> list[str]:
        with self.session(user) as s:
            return self._describe(s, user)


class AsyncEdge(Edge, Generic[S]):
    """An edge whose requests are coroutines."""

    is_async = True

    @abc.abstractmethod
    def session(
        self,
        user: User,
        *,
        allowed_origins: Sequence[str] | None = None,
        proxy: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[S]:
        """A new session bound to `user`; closed when the context ends."""

    @abc.abstractmethod
    async def request(
        self,
        session: S,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: Body | None = None,
        without_token: bool = False,
        follow_redirects: bool = True,
    ) -> Answer:
        """One request on an open session."""

    @abc.abstractmethod
    def _describe(self, session: S, user: User) -> list[str]: ...

    async def asend(
        self,
        user: User,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: Body | None = None,
        without_token: bool = False,
        follow_redirects: bool = True,
        proxy: str | None = None,
        allowed_origins: Sequence[str] | None = None,
    ) -> Answer:
        """The coroutine behind `send`."""
        async with self.session(
            user, allowed_origins=allowed_origins, proxy=proxy
        ) as s:
            return await self.request(
                s,
                method,
                url,
                headers=headers,
                body=body,
                without_token=without_token,
                follow_redirects=follow_redirects,
            )

    async def asend_many(
        self,
        user: User,
        calls: Sequence[Call],
        *,
        proxy: str | None = None,
        allowed_origins: Sequence[str] | None = None,
    ) -> list[Outcome]:
        """The coroutine behind `send_many`."""
        outcomes: list[Outcome] = []
        async with self.session(
            user, allowed_origins=allowed_origins, proxy=proxy
        ) as s:
            for call in calls:
                try:
                    outcomes.append(await self.call(s, call))
                except Exception as exc:
                    outcomes.append(exc)
        return outcomes

    def send_many(
        self,
        user: User,
        calls: Sequence[Call],
        *,
        proxy: str | None = None,
        allowed_origins: Sequence[str] | None = None,
    ) -> list[Outcome]:
        return asyncio.run(
            self.asend_many(user, calls, proxy=proxy, allowed_origins=allowed_origins)
        )

    async def call(self, session: S, call: Call) -> Answer:
        """`request` for a `Call`."""
        return await self.request(
            session,
            call.method,
            call.url,
            headers=call.headers,
            body=call.body,
            without_token=call.without_token,
            follow_redirects=call.follow_redirects,
        )

    def send(
        self,
        user: User,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: Body | None = None,
        without_token: bool = False,
        follow_redirects: bool = True,
        proxy: str | None = None,
        allowed_origins: Sequence[str] | None = None,
    ) -> Answer:
        return asyncio.run(
            self.asend(
                user,
                method,
                url,
                headers=headers,
                body=body,
                without_token=without_token,
                follow_redirects=follow_redirects,
                proxy=proxy,
                allowed_origins=allowed_origins,
            )
        )

    async def afire(
        self,
        user: User,
        n: int,
        url: str,
        *,
        clients: int = 1,
        method: str = "GET",
        body: Body | None = None,
    ) -> list[Outcome]:
        """The coroutine behind `fire`: `n` tasks on the running loop."""
        async with contextlib.AsyncExitStack() as stack:
            pool = [
                await stack.enter_async_context(self.session(user))
                for _ in range(clients)
            ]
            outcomes = await asyncio.gather(
                *(
                    self.request(pool[i % clients], method, url, body=body)
                    for i in range(n)
                ),
                return_exceptions=True,
            )
            return list(outcomes)

    def fire(
        self,
        user: User,
        n: int,
        url: str,
        *,
        clients: int = 1,
        method: str = "GET",
        body: Body | None = None,
    ) -> list[Outcome]:
        return asyncio.run(
            self.afire(user, n, url, clients=clients, method=method, body=body)
        )

    def describe(self, user: User) -> list[str]:
        async def go() -> list[str]:
            async with self.session(user) as s:
                return self._describe(s, user)

        return asyncio.run(go())


def _bind(
    request: Callable[..., Answer],
    session: object,
    method: str,
    url: str,
    body: Body | None,
) -> Callable[[], Answer]:
    return lambda: request(session, method, url, body=body)


def run_in_threads(
    calls: Sequence[Callable[[], Answer]],
    barrier: threading.Barrier | None = None,
) -> list[Outcome]:
    """Run each call in a thread of its own, all released by one barrier.

    A `barrier` given must count these threads and whoever else waits on it.
    """
    results: list[Outcome | None] = [None] * len(calls)
    start = barrier or threading.Barrier(len(calls), timeout=PATIENCE)

    def one(index: int) -> None:
        try:
            start.wait()
            results[index] = calls[index]()
        except BaseException as exc:
            results[index] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PATIENCE * 2)
    assert not any(t.is_alive() for t in threads), "a request never finished"
    return [result for result in results if result is not None]


# -- httpx and httpx2 ------------------------------------------------------------


class _HttpxLikeResponse(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def history(self) -> Sequence[_HttpxLikeResponse]: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def content(self) -> bytes: ...


def _httpx_answer(response: _HttpxLikeResponse) -> Answer:
    return Answer(
        status=response.status_code,
        history=tuple(hop.status_code for hop in response.history),
        headers={name.lower(): value for name, value in response.headers.items()},
        content=response.content,
    )


def _httpx_options(
    body: Body | None,
    headers: Headers | None,
    stack: contextlib.ExitStack,
    *,
    is_async: bool,
) -> dict[str, Any]:
    """The keyword arguments of an httpx (or httpx2) request for `body`."""
    options: dict[str, Any] = {"headers": list(headers or [])}
    if body is None:
        return options
    if body.kind == "bytes":
        options["content"] = body.payload
    elif body.kind == "form":
        options["data"] = body.form_fields
    elif body.kind == "json":
        options["json"] = body.value
    elif body.kind == "file":
        file = stack.enter_context(body.opened_file())
        if is_async:
            # An AsyncClient takes no sync file as content; its way to send a
            # file is a multipart upload, which rewinds the file each time.
            options["files"] = {"upload": ("upload.bin", file, "application/x-raw")}
            options["headers"].append(
                ("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
            )
        else:
            options["content"] = file
    else:
        options["content"] = body.async_stream() if is_async else body.sync_stream()
    return options


def _httpx_wire_bytes(
    request_class: Callable[..., Any], body: Body, *, is_async: bool
) -> bytes:
    with contextlib.ExitStack() as stack:
        if body.kind in ("bytes", "stream") or (body.kind == "file" and not is_async):
            return body.payload
        options = _httpx_options(body, None, stack, is_async=is_async)
        request = request_class("POST", "http://127.0.0.1/upload", **options)
        data = request.read()
        assert isinstance(data, bytes)
        return data


class _HttpxFamilySync(SyncEdge[Any]):
    """A sync client of httpx or httpx2 (same API); opt-out: ``auth=None``."""

    #: The library's request class, for the exact bytes of a body.
    request_class: ClassVar[type]

    @abc.abstractmethod
    def client_class(self) -> Callable[..., Any]:
        """The usersession client class of this edge."""

    def session(
        self,
        user: User,
        *,
        allowed_origins: Sequence[str] | None = None,
        proxy: str | None = None,
    ) -> contextlib.AbstractContextManager[Any]:
        client: contextlib.AbstractContextManager[Any] = self.client_class()(
            user,
            allowed_origins=allowed_origins,
            proxy=proxy,
            trust_env=False,
            timeout=PATIENCE,
        )
        return client

    def request(
        self,
        session: Any,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: Body | None = None,
        without_token: bool = False,
        follow_redirects: bool = True,
    ) -> Answer:
        with contextlib.ExitStack() as stack:
            options = _httpx_options(body, headers, stack, is_async=False)
            if without_token:
                options["auth"] = None
            response = session.request(
                method, url, follow_redirects=follow_redirects, **options
            )
            return _httpx_answer(response)

    def _describe(self, session: Any, user: User) -> list[str]:
        return [repr(session), str(session), repr(session.auth), str(session.auth)]

    def wire_bytes(self, body: Body) -> bytes:
        return _httpx_wire_bytes(self.request_class, body, is_async=False)


class _HttpxFamilyAsync(AsyncEdge[Any]):
    """An async client of httpx or httpx2 (same API); opt-out: ``auth=None``."""

    request_class: ClassVar[type]

    @abc.abstractmethod
    def client_class(self) -> Callable[..., Any]:
        """The usersession client class of this edge."""

    def session(
        self,
        user: User,
        *,
        allowed_origins: Sequence[str] | None = None,
        proxy: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[Any]:
        client: contextlib.AbstractAsyncContextManager[Any] = self.client_class()(
            user,
            allowed_origins=allowed_origins,
            proxy=proxy,
            trust_env=False,
            timeout=PATIENCE,
        )
        return client

    async def request(
        self,
        session: Any,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: Body | None = None,
        without_token: bool = False,
        follow_redirects: bool = True,
    ) -> Answer:
        with contextlib.ExitStack() as stack:
            options = _httpx_options(body, headers, stack, is_async=True)
            if without_token:
                options["auth"] = None
            response = await session.request(
                method, url, follow_redirects=follow_redirects, **options
            )
            return _httpx_answer(response)

    def _describe(self, session: Any, user: User) -> list[str]:
        return [repr(session), str(session), repr(session.auth), str(session.auth)]

    def wire_bytes(self, body: Body) -> bytes:
        return _httpx_wire_bytes(self.request_class, body, is_async=True)


class HttpxSync(_HttpxFamilySync):
    """`usersession.Client`, an httpx.Client."""

    name = "httpx-sync"
    module = "usersession"
    request_class = httpx.Request

    def client_class(self) -> Callable[..., Any]:
        return usersession.Client


class HttpxAsync(_HttpxFamilyAsync):
    """`usersession.AsyncClient`, an httpx.AsyncClient."""

    name = "httpx-async"
    module = "usersession"
    request_class = httpx.Request

    def client_class(self) -> Callable[..., Any]:
        return usersession.AsyncClient


class Httpx2Sync(_HttpxFamilySync):
    """`usersession.httpx2.Client`, an httpx2.Client."""

    name = "httpx2-sync"
    module = "usersession.httpx2"
    request_class = httpx2.Request

    def client_class(self) -> Callable[..., Any]:
        from usersession import httpx2 as us_httpx2

        return us_httpx2.Client


class Httpx2Async(_HttpxFamilyAsync):
    """`usersession.httpx2.AsyncClient`, an httpx2.AsyncClient."""

    name = "httpx2-async"
    module = "usersession.httpx2"
    request_class = httpx2.Request

    def client_class(self) -> Callable[..., Any]:
        from usersession import httpx2 as us_httpx2

        return us_httpx2.AsyncClient


# -- requests --------------------------------------------------------------------


def _requests_options(body: Body | None, stack: contextlib.ExitStack) -> dict[str, Any]:
    if body is None:
        return {}
    if body.kind == "bytes":
        return {"data": body.payload}
    if body.kind == "form":
        return {"data": body.form_fields}
    if body.kind == "json":
        return {"json": body.value}
    if body.kind == "file":
        return {"data": stack.enter_context(body.opened_file())}
    return {"data": body.sync_stream()}


class Requests(SyncEdge[requests.Session]):
    """`usersession.requests.Session`, a requests.Session whose ``.auth`` is a
    `usersession.requests.UserAuth`; opt-out: ``auth=NO_TOKEN``."""

    name = "requests"
    module = "usersession.requests"

    def session(
        self,
        user: User,
        *,
        allowed_origins: Sequence[str] | None = None,
        proxy: str | None = None,
    ) -> contextlib.AbstractContextManager[requests.Session]:
        from usersession import requests as us_requests

        session = us_requests.Session(user, allowed_origins=allowed_origins)
        session.trust_env = False
        if proxy is not None:
            session.proxies = {"http": proxy, "https": proxy}
        return session

    def request(
        self,
        session: requests.Session,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: Body | None = None,
        without_token: bool = False,
        follow_redirects: bool = True,
    ) -> Answer:
        from usersession import requests as us_requests

        with contextlib.ExitStack() as stack:
            options = _requests_options(body, stack)
            if without_token:
                options["auth"] = us_requests.NO_TOKEN
            with session.request(
                method,
                url,
                headers=dict(headers or []),
                allow_redirects=follow_redirects,
                timeout=PATIENCE,
                **options,
            ) as response:
                return Answer(
                    status=response.status_code,
                    history=tuple(hop.status_code for hop in response.history),
                    headers={k.lower(): v for k, v in response.headers.items()},
                    content=response.content,
                )

    def _describe(self, session: requests.Session, user: User) -> list[str]:
        return [repr(session), str(session), repr(session.auth), str(session.auth)]

    def wire_bytes(self, body: Body) -> bytes:
        if body.kind in ("bytes", "file", "stream"):
            return body.payload
        with contextlib.ExitStack() as stack:
            prepared = requests.Request(
                "POST", "http://127.0.0.1/upload", **_requests_options(body, stack)
            ).prepare()
        data: object = prepared.body
        if isinstance(data, str):
            return data.encode()
        assert isinstance(data, bytes), data
        return data


# -- aiohttp ---------------------------------------------------------------------


def _aiohttp_options(body: Body | None, stack: contextlib.ExitStack) -> dict[str, Any]:
    if body is None:
        return {}
    if body.kind == "bytes":
        return {"data": body.payload}
    if body.kind == "form":
        return {"data": body.form_fields}
    if body.kind == "json":
        return {"json": body.value}
    if body.kind == "file":
        return {"data": stack.enter_context(body.opened_file())}
    return {"data": body.async_stream()}


class Aiohttp(AsyncEdge[aiohttp.ClientSession]):
    """`usersession.aiohttp.client_session(user)`, an aiohttp.ClientSession with
    usersession's middleware and trace config; opt-out: ``middlewares=()``."""

    name = "aiohttp"
    module = "usersession.aiohttp"

    def session(
        self,
        user: User,
        *,
        allowed_origins: Sequence[str] | None = None,
        proxy: str | None = None,
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientSession]:
        from usersession import aiohttp as us_aiohttp

        return us_aiohttp.client_session(
            user,
            allowed_origins=allowed_origins,
            proxy=proxy,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=PATIENCE),
        )

    async def request(
        self,
        session: aiohttp.ClientSession,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: Body | None = None,
        without_token: bool = False,
        follow_redirects: bool = True,
    ) -> Answer:
        with contextlib.ExitStack() as stack:
            options = _aiohttp_options(body, stack)
            if without_token:
                options["middlewares"] = ()
            async with session.request(
                method,
                url,
                headers=list(headers or []),
                allow_redirects=follow_redirects,
                **options,
            ) as response:
                content = await response.read()
                return Answer(
                    status=response.status,
                    history=tuple(hop.status for hop in response.history),
                    headers={k.lower(): v for k, v in response.headers.items()},
                    content=content,
                )

    def _describe(self, session: aiohttp.ClientSession, user: User) -> list[str]:
        from usersession import aiohttp as us_aiohttp

        middleware = us_aiohttp.UserMiddleware(user)
        texts = [repr(session), str(session), repr(middleware), str(middleware)]
        texts.extend(repr(config) for config in session.trace_configs)
        return texts

    def wire_bytes(self, body: Body) -> bytes:
        if body.kind in ("bytes", "file", "stream"):
            return body.payload
        if body.kind == "form":
            # aiohttp.FormData without files: urlencode(doseq=True), UTF-8.
            return urllib.parse.urlencode(body.fields, doseq=True).encode()
        # aiohttp's default json_serialize is json.dumps.
        return json.dumps(body.value).encode()


# -- The registry ----------------------------------------------------------------

#: Every edge, by the pytest id of its parameter.
EDGES: dict[str, Edge] = {
    edge.name: edge
    for edge in (
        HttpxSync(),
        HttpxAsync(),
        Httpx2Sync(),
        Httpx2Async(),
        Requests(),
        Aiohttp(),
    )
}

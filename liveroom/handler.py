"""Django's ASGI handler as liveroom runs it: a request goes to a thread once, and threads are
kept for the next requests.

Every middleware here is synchronous, and so are the pages' views. Django's own handler starts
a thread for each request (asgiref's ThreadSensitiveContext) and goes to it three times: for
the `request_started` signal, for the middleware and the view, and for closing the response.
This one loads the middleware as a WSGI handler would and goes to a thread once: the signal,
the middleware and the view, and the response's closing (`request_finished`, which hands the
database connection back to the pool) run in one call, and the response is sent from the event
loop. A response whose content is made as it is sent (a streamed file) is closed after it is
sent, on the same thread. An async view (the probes) is run by Django from that thread, on the
event loop.

A thread serves one request at a time, from its start to its closing, as Django's does; only it
is not stopped after. `RequestThreads` owns the idle ones. Django's version is pinned
(requirements.txt); tests/test_asgi.py checks what a request costs in hops and threads.
"""

from concurrent.futures import ThreadPoolExecutor
from contextlib import closing

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponseBase
from django.urls import set_script_prefix


class RequestThreads:
    """Threads for requests, one request at a time each: one is lent to a request for its whole
    life and taken back after; up to `keep` idle ones are kept (used on the event loop only)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.idle: list[ThreadPoolExecutor] = []
        self.started = 0  # threads started so far

    def lend(self) -> ThreadPoolExecutor:
        if self.idle:
            return self.idle.pop()  # the one used last: its memory is the warmest
        self.started += 1
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")

    def take_back(self, thread: ThreadPoolExecutor) -> None:
        """A thread still finishing a request that was given up (the client went) runs the next
        one after it."""
        if len(self.idle) < self.keep:
            self.idle.append(thread)
        else:
            thread.shutdown(wait=False)


class OneThreadASGIHandler(ASGIHandler):
    """Django's ASGI handler, running each request in a thread once (module docstring)."""

    def __init__(self, keep_threads: int = 64) -> None:
        super().__init__()
        self.threads = RequestThreads(keep_threads)

    def load_middleware(self, is_async: bool = False) -> None:
        super().load_middleware(is_async=False)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django can only handle ASGI/HTTP connections, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        thread = self.threads.lend()
        try:
            # Anything else a request runs thread-sensitively (Django reading a streamed file's
            # parts) gets a thread of its own, as under Django's handler.
            async with ThreadSensitiveContext():
                with closing(body_file):
                    respond = sync_to_async(self.respond, thread_sensitive=False, executor=thread)
                    response = await respond(scope, body_file)
                    try:
                        await self.send_response(response, send)
                    finally:
                        if response.streaming:
                            close = sync_to_async(
                                response.close, thread_sensitive=False, executor=thread
                            )
                            await close()
        finally:
            self.threads.take_back(thread)

    def respond(self, scope, body_file) -> HttpResponseBase:
        """In the request's thread: the request, and the response's closing once its content is
        made."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self.get_response(request)
            # The sender of its request_finished (an attribute Django's stubs do not know).
            response._handler_class = self.__class__  # type: ignore[attr-defined]
            if isinstance(response, FileResponse):
                response.block_size = self.chunk_size  # the server chunks what it sends
        assert response is not None  # create_request gives one or the other
        if not response.streaming:
            response.close()
        return response

"""A bare ASGI application for tests/test_server.py: served by `python -m liveroom.server` like
liveroom itself, it answers a few text commands about its own socket so the tests can see what
liveroom's daphne does. Not part of liveroom: it imports nothing from the app but its framing.

Socket commands: "inspect" (what is still kept of the handshake), "flood N SIZE" (N numbered
frames of SIZE bytes written at once, then N more half a second later), "close CODE". Over HTTP,
/slow sends its head at once and the rest of its body 2 s later, /status says what the server's
status extension says, /process what the server set up in its process (the garbage collector,
autobahn's debug formatting), and any other path answers "ready".
"""

import asyncio
import gc
import json
import types

from liveroom.live.sockets import text_frame

SOCKET_EXTENSION = "liveroom.socket"
STATUS_EXTENSION = "liveroom.server"


async def application(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        return
    if scope["type"] == "http":
        body = b"ready"  # what harness/servers.Daphne waits for
        if scope["path"] == "/slow":  # its head at once, its body 2 s later
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"rea", "more_body": True})
            await asyncio.sleep(2)
            await send({"type": "http.response.body", "body": b"dy"})
            return
        if scope["path"] == "/status":
            status = scope.get("extensions", {}).get(STATUS_EXTENSION)
            body = json.dumps({"draining": status.draining if status else None}).encode()
        if scope["path"] == "/process":
            import autobahn.websocket.protocol

            body = json.dumps({
                "frozen": gc.get_freeze_count(),
                "young_threshold": gc.get_threshold()[0],
                "configuration_formatted_by": autobahn.websocket.protocol.pformat.__name__,
            }).encode()  # fmt: skip
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})
        return
    assert (await receive())["type"] == "websocket.connect"
    socket = scope.get("extensions", {}).get(SOCKET_EXTENSION)
    marker = marker_of(scope)  # what the client put in its Cookie header
    await send({"type": "websocket.accept"})
    if socket is not None:
        socket.forget_handshake()
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        command, *args = message.get("text", "").split()
        if command == "inspect":
            await send({"type": "websocket.send", "text": json.dumps(inspect(socket, marker))})
        elif command == "flood":
            count, size = map(int, args)
            for number in range(count):
                socket.send(text_frame(numbered(number, size)))
            await asyncio.sleep(0.5)  # the client still reads nothing: the kernel is full
            for number in range(count, 2 * count):
                socket.send(text_frame(numbered(number, size)))
        elif command == "close":
            await send({"type": "websocket.close", "code": int(args[0])})
            return


def marker_of(scope: dict) -> str:
    cookie = dict(scope["headers"]).get(b"cookie", b"").decode()
    return cookie.partition("probe=")[2]


def numbered(number: int, size: int) -> str:
    return f"{number:08d}".ljust(size, "x")


def inspect(socket, marker: str) -> dict:
    """Whether the server still holds the handshake, found by what holds the marker: any
    collected container in the process (an HTTP request the server still refers to), and
    anything the connection itself reaches (CPython does not track containers of strings)."""
    gc.collect()
    holders = [type(obj).__name__ for obj in gc.get_objects() if holds(obj, marker)]
    protocol = socket.protocol if socket is not None else None
    if protocol is not None:
        holders += reached_from(protocol, marker)
    return {
        "raw_socket": socket is not None,
        "producer": None if protocol is None else repr(protocol.transport.producer),
        "holders": holders,
    }


# Shared by every connection: what they reach is not one connection's.
SHARED = {"LiveroomServer", "WebSocketFactory", "HTTPFactory", "Port", "AsyncioSelectorReactor"}
OPAQUE = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType)


def reached_from(root: object, marker: str) -> list[str]:
    """The strings and bytes holding `marker` that `root` reaches, by the type of each."""
    found, seen, stack = [], set(), [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, str | bytes | bytearray):
            if (marker if isinstance(obj, str) else marker.encode()) in obj:
                found.append(f"{type(obj).__name__} reached from {type(root).__name__}")
        elif not isinstance(obj, OPAQUE) and type(obj).__name__ not in SHARED:
            stack.extend(gc.get_referents(obj))
    return found


def holds(obj: object, marker: str) -> bool:
    if isinstance(obj, dict):
        items = [*obj.keys(), *obj.values()]
    elif isinstance(obj, list | tuple):
        items = list(obj)
    else:
        return False
    for item in items:
        if isinstance(item, str) and marker in item:
            return True
        if isinstance(item, bytes | bytearray) and marker.encode() in item:
            return True
    return False

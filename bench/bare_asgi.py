"""The least an ASGI app can do over a WebSocket: accept, send one message, wait to be closed.

`python -m bench.churn --bare-daphne` serves it with daphne, to tell daphne's own memory use
per connection from liveroom's.
"""


async def application(scope, receive, send):
    if scope["type"] == "http":
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "hello"})
    while (await receive())["type"] != "websocket.disconnect":
        pass

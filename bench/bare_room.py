"""A bare room server with liveroom's contract, for bench.arrival to measure against.

One aiohttp process, members in a dict, pages and snapshots built by string joins: what the
least a server could do for an arrival costs on this machine. Not a product: no database, no
templates, no security beyond what the contract needs.

    python -m bench.bare_room --port 8100

GET /room/join/ is the form; POST /room/join/ (name=...) sets a session cookie, adds the member,
sends the new entry to every open page and redirects to /room/; GET /room/ is the page with the
whole list; /ws/room/ sends the list, then each change.
"""

import argparse
import html
import secrets

from aiohttp import WSMsgType, web

FORM = (
    "<!doctype html><title>Join</title><form method=post action=/room/join/>"
    "<input name=csrfmiddlewaretoken type=hidden value=x><input name=name>"
    "<button>Join</button></form>"
)


def entry(member_id: int, name: str) -> str:
    return (
        f'<li id="member-{member_id}" class="member"><span class="member__name">{name}</span></li>'
    )


class Room:
    def __init__(self) -> None:
        self.members: dict[str, tuple[int, str]] = {}  # session -> (id, escaped name)
        self.sockets: set[web.WebSocketResponse] = set()

    def listing(self) -> str:
        entries = "".join(entry(member_id, name) for member_id, name in self.members.values())
        return f'<ul id="members" class="members" hx-swap-oob="true">{entries}</ul>'

    async def join_page(self, request: web.Request) -> web.Response:
        response = web.Response(text=FORM, content_type="text/html")
        response.set_cookie("csrftoken", "x")
        return response

    async def join(self, request: web.Request) -> web.Response:
        form = await request.post()
        session = request.cookies.get("sessionid") or secrets.token_hex(16)
        name = html.escape(str(form.get("name", ""))[:40])
        if session not in self.members:
            member_id = len(self.members) + 1
            self.members[session] = (member_id, name)
            change = f'<ul hx-swap-oob="beforeend:#members">{entry(member_id, name)}</ul>'
            for socket in list(self.sockets):
                await socket.send_str(change)
        response = web.HTTPFound("/room/")
        response.set_cookie("sessionid", session, httponly=True)
        raise response

    async def page(self, request: web.Request) -> web.Response:
        if request.cookies.get("sessionid") not in self.members:
            raise web.HTTPFound("/room/join/")
        body = f"<!doctype html><title>Room</title><div ws-connect=/ws/room/>{self.listing()}</div>"
        return web.Response(text=body, content_type="text/html")

    async def socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(heartbeat=None)
        await socket.prepare(request)
        if request.cookies.get("sessionid") not in self.members:
            await socket.close(code=4403)
            return socket
        await socket.send_str(self.listing())
        self.sockets.add(socket)
        try:
            async for message in socket:
                if message.type != WSMsgType.TEXT:
                    break
                await socket.close(code=1008)
        finally:
            self.sockets.discard(socket)
        return socket


def application() -> web.Application:
    room = Room()
    app = web.Application()
    app.add_routes(
        [
            web.get("/room/join/", room.join_page),
            web.post("/room/join/", room.join),
            web.get("/room/", room.page),
            web.get("/ws/room/", room.socket),
        ]
    )
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8100)
    args = parser.parse_args()
    web.run_app(application(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()

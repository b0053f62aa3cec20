"""A change framed once and written to each socket (liveroom/daphne_server.py)."""

from autobahn.websocket.protocol import WebSocketProtocol

from liveroom.daphne_server import PreparedSocket, prepare


class FakeProtocol:
    """What PreparedSocket uses of an autobahn protocol, recording where each frame went."""

    STATE_OPEN = WebSocketProtocol.STATE_OPEN

    def __init__(self, state: int = WebSocketProtocol.STATE_OPEN, muted: bool = False) -> None:
        self.state, self.muted = state, muted
        self.send_queue: list = []  # autobahn's delayed writes
        self.written: list[bytes] = []  # straight to the transport
        self.queued: list[bytes] = []  # through autobahn's sendData
        self.transport = self

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def sendData(self, data: bytes) -> None:
        self.queued.append(data)


def test_a_change_is_one_unmasked_text_frame() -> None:
    text = "<p>Zoë joined</p>" * 20  # over 125 bytes: a 16-bit length
    payload = text.encode()
    assert prepare(text) == bytes([0x81, 126]) + len(payload).to_bytes(2, "big") + payload


def test_a_frame_goes_straight_to_an_open_socket() -> None:
    protocol = FakeProtocol()
    PreparedSocket(protocol).send(b"frame")
    assert (protocol.written, protocol.queued) == ([b"frame"], [])


def test_a_frame_waits_behind_writes_autobahn_has_queued() -> None:
    protocol = FakeProtocol()
    protocol.send_queue.append((b"earlier", False))
    PreparedSocket(protocol).send(b"frame")
    assert (protocol.written, protocol.queued) == ([], [b"frame"])


def test_closing_and_muted_sockets_get_nothing() -> None:
    for protocol in (FakeProtocol(state=WebSocketProtocol.STATE_CLOSING), FakeProtocol(muted=True)):
        PreparedSocket(protocol).send(b"frame")
        assert (protocol.written, protocol.queued) == ([], [])

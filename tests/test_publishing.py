"""Publishing: one publish out at a time per process; the messages that come meanwhile go out
together, one batch a room, in the order they came; a publish that fails is counted and logged
for each message in it."""

import asyncio

import pytest
from channels.layers import get_channel_layer

from liveroom.live import publish


def change(group: str, version: int) -> dict:
    return {"type": "room.change", "group": group, "version": version, "member_id": 1,
            "left": False, "rendered": {"en": f"<p>{version}</p>"}}  # fmt: skip


@pytest.fixture
def layer_calls(monkeypatch) -> list[tuple[str, list[int]]]:
    calls: list[tuple[str, list[int]]] = []
    layer = get_channel_layer()

    async def group_send(group: str, message: dict) -> None:
        calls.append((group, [sent["version"] for sent in message.get("messages", [message])]))
        await asyncio.sleep(0.05)  # a publish takes a while: others come meanwhile

    monkeypatch.setattr(layer, "group_send", group_send)
    return calls


@pytest.mark.asyncio
async def test_a_quiet_publish_goes_at_once_and_those_meanwhile_go_together(layer_calls) -> None:
    assert await publish.publish("room.a", change("room.a", 1), what="first")
    first = asyncio.create_task(publish.publish("room.a", change("room.a", 2), what="x"))
    await asyncio.sleep(0.01)  # it is out
    later = [
        publish.publish(f"room.{'b' if version % 2 else 'a'}", change("", version), what="x")
        for version in range(3, 9)
    ]
    assert all(await asyncio.gather(first, *later))
    assert layer_calls == [
        ("room.a", [1]),
        ("room.a", [2]),
        ("room.b", [3, 5, 7]),  # one batch a room, in the order they came
        ("room.a", [4, 6, 8]),
    ]


@pytest.mark.asyncio
async def test_a_publish_that_fails_is_logged_once_and_counted_for_each_message(
    monkeypatch, caplog
) -> None:
    async def refused(group: str, message: dict) -> None:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(get_channel_layer(), "group_send", refused)
    sent = await asyncio.gather(
        *(publish.publish("room.a", change("room.a", version), what="join") for version in (1, 2))
    )
    assert sent == [False, False]
    skipped = [record for record in caplog.records if record.message.startswith("Broadcast")]
    assert [record.message for record in skipped] == [
        "Broadcast skipped (join; group room.a, 2 message(s)): ConnectionError Redis is down"
    ]

"""Sessions (liveroom/rooms/sessions.py): Django's database sessions, each written once when it
starts."""

import math
from datetime import timedelta

import pytest
from django.contrib.sessions.backends.base import VALID_KEY_CHARS
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from liveroom.rooms import cleanup, sessions
from liveroom.rooms.models import Member
from liveroom.rooms.sessions import SessionStore

pytestmark = pytest.mark.django_db


def test_joining_writes_the_new_session_once_and_reads_nothing_of_it(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A join may sweep, which deletes expired sessions: not this session's statements.
    monkeypatch.setattr(cleanup.sweeps, "next_sweep", math.inf)
    with CaptureQueriesContext(connection) as queries:
        response = client.post("/room/join/", {"name": "Alice"})

    assert response.status_code == 302
    session_statements = [q["sql"] for q in queries if "django_session" in q["sql"]]
    assert len(session_statements) == 1, session_statements
    assert session_statements[0].startswith("INSERT")
    key = client.cookies["sessionid"].value
    assert Session.objects.filter(session_key=key).exists()
    assert Member.objects.get().session_key == key


def test_a_join_that_starts_the_session_looks_up_no_membership_and_a_rename_does(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cleanup.sweeps, "next_sweep", math.inf)

    def member_lookups(name: str) -> list[str]:
        with CaptureQueriesContext(connection) as queries:
            assert client.post("/room/join/", {"name": name}).status_code == 302
        return [q["sql"] for q in queries
                if q["sql"].startswith('SELECT "liveroom_member"."id"')]  # fmt: skip

    assert member_lookups("Alice") == []  # a key drawn in this request: nobody has it yet
    assert len(member_lookups("Alicia")) == 1  # the same session again: its membership
    assert list(Member.objects.values_list("name", flat=True)) == ["Alicia"]


def test_a_store_says_whether_it_started_the_session() -> None:
    started = SessionStore()
    started.create()
    assert sessions.started_here(started)
    assert not sessions.started_here(SessionStore(started.session_key))  # from a cookie


def test_data_set_after_the_session_started_is_saved() -> None:
    store = SessionStore()
    store.create()
    store["theme"] = "dark"
    store.save()
    store.save()  # a later save of the same data writes it again, as Django's store does

    assert SessionStore(store.session_key).load() == {"theme": "dark"}


def test_a_session_started_again_after_a_flush_gets_a_new_row() -> None:
    store = SessionStore()
    store.create()
    first = store.session_key
    store.flush()
    store.save()

    assert store.session_key != first
    assert set(Session.objects.values_list("session_key", flat=True)) == {store.session_key}


def test_new_keys_are_32_of_djangos_key_characters_and_differ() -> None:
    keys = {sessions.new_session_key() for _ in range(100)}
    assert len(keys) == 100
    assert all(len(key) == 32 and set(key) <= set(VALID_KEY_CHARS) for key in keys)


def test_a_new_key_that_is_taken_is_drawn_again_and_the_other_session_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    taken = SessionStore()
    taken["owner"] = "someone else"
    taken.save()
    keys = iter([taken.session_key, "a" * 32])
    monkeypatch.setattr(sessions, "new_session_key", lambda: next(keys))

    store = SessionStore()
    store.create()

    assert store.session_key == "a" * 32
    assert SessionStore(taken.session_key).load() == {"owner": "someone else"}


def test_a_room_page_reads_the_session_with_its_membership(client: Client) -> None:
    client.post("/room/join/", {"name": "Alice"})
    client.post("/room/live/", {"live": "pause"})
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/room/")

    assert 'paused=1"' in response.content.decode()  # the session's choice, as stored
    session_reads = [q["sql"] for q in queries if "django_session" in q["sql"]]
    assert len(session_reads) == 1, session_reads
    assert "liveroom_member" in session_reads[0]  # one statement: the member and its session
    assert "Cookie" in response.headers["Vary"]  # whose page it is


def test_an_expired_session_is_no_longer_asked_what_its_pages_chose(client: Client) -> None:
    client.post("/room/join/", {"name": "Alice"})
    client.post("/room/live/", {"live": "pause"})
    assert "paused=1" in client.get("/room/").content.decode()
    Session.objects.update(expire_date=timezone.now() - timedelta(seconds=1))

    assert "paused=1" not in client.get("/room/").content.decode()

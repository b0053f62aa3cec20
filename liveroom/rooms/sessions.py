"""Sessions: Django's database sessions, at two statements fewer for each one that starts.

A visitor's session starts when they join (the page's socket finds their membership by its key).
Django's database store first asks whether a new random key is taken, then inserts it, and at
the end of that same request writes the unchanged data again. This store inserts at once (32
random characters, 160 bits, drawn in one read of the system's randomness rather than one a
character: an existing key is a failed insert, and create() draws another) and skips a save
that would write what create() has just written.
"""

import base64
import secrets
from typing import Any

from django.conf import settings
from django.contrib.sessions.backends import db
from django.contrib.sessions.backends.base import SessionBase
from django.db.models import Exists, OuterRef, QuerySet, Subquery
from django.utils import timezone
from django.utils.module_loading import import_string


def session_engine() -> type[SessionBase]:
    """The SessionStore class of SESSION_ENGINE (this module's, unless a deployment names
    another)."""
    return import_string(f"{settings.SESSION_ENGINE}.SessionStore")


def stored_data(key_field: str) -> Subquery | None:
    """The data the store holds for the session whose key is in `key_field` of the rows being
    read (NULL once it has expired), to read in the same statement as those rows. None when the
    engine does not keep sessions in a database table."""
    unexpired = _unexpired(key_field)
    return None if unexpired is None else Subquery(unexpired.values("session_data")[:1])


def session_alive(key_field: str) -> Exists | None:
    """Whether the store still has the session whose key is in `key_field` of the rows being
    read, unexpired, to read in the same statement as those rows. None when the engine does not
    keep sessions in a database table (`live_sessions` asks it)."""
    unexpired = _unexpired(key_field)
    return None if unexpired is None else Exists(unexpired)


def _unexpired(key_field: str) -> QuerySet | None:
    engine = session_engine()
    if not issubclass(engine, db.SessionStore):
        return None
    return engine.get_model_class().objects.filter(  # what SessionStore.load() reads
        session_key=OuterRef(key_field), expire_date__gt=timezone.now()
    )


def live_sessions(session_keys: set[str]) -> set[str]:
    """The keys the session store still has, unexpired, asked of the engine one at a time (an
    engine that keeps them in a database table is asked with the rows: `session_alive`)."""
    engine = session_engine()
    live = set()
    for session_key in session_keys:
        store: SessionBase = engine(session_key)
        store.load()  # an unknown or expired session leaves the store without a key
        if store.session_key == session_key:
            live.add(session_key)
    return live


def new_session_key() -> str:
    """20 random bytes in base 32: 32 of Django's VALID_KEY_CHARS (lowercase letters, digits)."""
    return base64.b32encode(secrets.token_bytes(20)).decode().lower()


def started_here(session: SessionBase) -> bool:
    """Whether `session` was started by the request it belongs to: its key is new, so nothing
    (a membership) can be stored under it yet. False when the engine cannot tell."""
    return isinstance(session, SessionStore) and session.started_here


class SessionStore(db.SessionStore):
    # The key and data create() inserted, while nothing else has been saved.
    _as_created: tuple[str, dict[str, Any]] | None = None
    started_here = False  # create() drew this store's key: it is new

    def _get_new_session_key(self) -> str:
        return new_session_key()

    def create(self) -> None:
        super().create()
        assert self.session_key is not None
        self.started_here = True
        self._as_created = (self.session_key, dict(self.items()))

    def save(self, must_create: bool = False) -> None:
        if not must_create and self.unchanged_since_created():
            return
        self._as_created = None
        super().save(must_create=must_create)

    def unchanged_since_created(self) -> bool:
        """Whether the row create() inserted holds this very key, data and expiry."""
        if self._as_created is None:
            return False  # and nothing loaded to tell
        return self._as_created == (self.session_key, dict(self.items()))

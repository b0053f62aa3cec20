"""The database keeps the rule every page relies on: any insert or delete of a member, and any
change of a field pages show (Member.SHOWN_FIELDS) or of its room, bumps the room's `version` (and
`changed_at`) in the writer's own transaction, whoever the writer is (docs/architecture.md). The
same triggers keep the room's `member_count`, so nothing counts a crowd's rows to know its size.

The triggers are installed after every `migrate` (a `post_migrate` receiver, liveroom/apps.py),
from SHOWN_FIELDS as they are then: a field added to them is covered at the next migrate, and
SQLite, which rebuilds a table to alter it and drops its triggers with the old one, gets them
back. SQL for SQLite and for PostgreSQL; any other database is refused.
"""

from collections.abc import Iterable

from django.db.backends.base.base import BaseDatabaseWrapper

from liveroom.rooms.models import Member

SQLITE_BUMP = """UPDATE liveroom_room
    SET version = version + 1, changed_at = strftime('%Y-%m-%d %H:%M:%f', 'now'),
        member_count = member_count + ({delta})
    WHERE id = {row}.room_id"""


def statements(vendor: str, shown: Iterable[str]) -> list[str]:
    """The SQL that (re)creates the triggers for `shown` fields on `vendor`'s database."""
    columns = (*shown, "room_id")
    of = ", ".join(columns)
    if vendor == "sqlite":
        changed = " OR ".join(f"OLD.{column} IS NOT NEW.{column}" for column in columns)
        return [
            "DROP TRIGGER IF EXISTS liveroom_member_insert_bumps_room",
            "DROP TRIGGER IF EXISTS liveroom_member_delete_bumps_room",
            "DROP TRIGGER IF EXISTS liveroom_member_update_bumps_room",
            f"""CREATE TRIGGER liveroom_member_insert_bumps_room AFTER INSERT ON liveroom_member
            BEGIN {SQLITE_BUMP.format(row="NEW", delta="1")}; END""",
            f"""CREATE TRIGGER liveroom_member_delete_bumps_room AFTER DELETE ON liveroom_member
            BEGIN {SQLITE_BUMP.format(row="OLD", delta="-1")}; END""",
            f"""CREATE TRIGGER liveroom_member_update_bumps_room AFTER UPDATE OF {of}
            ON liveroom_member WHEN {changed}
            BEGIN
                {SQLITE_BUMP.format(row="NEW", delta="OLD.room_id IS NOT NEW.room_id")};
                {SQLITE_BUMP.format(row="OLD", delta="-1")} AND OLD.room_id IS NOT NEW.room_id;
            END""",
        ]
    if vendor == "postgresql":
        changed = " OR ".join(f"OLD.{column} IS DISTINCT FROM NEW.{column}" for column in columns)
        return [
            """CREATE OR REPLACE FUNCTION liveroom_member_bumps_room() RETURNS trigger
            LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP <> 'DELETE' THEN
                    UPDATE liveroom_room SET version = version + 1, changed_at = now(),
                        member_count = member_count + CASE WHEN TG_OP = 'INSERT'
                            OR OLD.room_id IS DISTINCT FROM NEW.room_id THEN 1 ELSE 0 END
                    WHERE id = NEW.room_id;
                END IF;
                IF TG_OP = 'DELETE' OR OLD.room_id IS DISTINCT FROM NEW.room_id THEN
                    UPDATE liveroom_room SET version = version + 1, changed_at = now(),
                        member_count = member_count - 1
                    WHERE id = OLD.room_id;
                END IF;
                RETURN NULL;
            END
            $$""",
            "DROP TRIGGER IF EXISTS liveroom_member_insert_delete_bumps_room ON liveroom_member",
            "DROP TRIGGER IF EXISTS liveroom_member_update_bumps_room ON liveroom_member",
            """CREATE TRIGGER liveroom_member_insert_delete_bumps_room
            AFTER INSERT OR DELETE ON liveroom_member
            FOR EACH ROW EXECUTE FUNCTION liveroom_member_bumps_room()""",
            f"""CREATE TRIGGER liveroom_member_update_bumps_room
            AFTER UPDATE OF {of} ON liveroom_member FOR EACH ROW WHEN ({changed})
            EXECUTE FUNCTION liveroom_member_bumps_room()""",
        ]
    raise NotImplementedError(
        f"liveroom keeps room versions with triggers on SQLite and PostgreSQL, not {vendor}"
    )


def install(connection: BaseDatabaseWrapper, shown: Iterable[str] = Member.SHOWN_FIELDS) -> None:
    """(Re)create the triggers on `connection`'s database, in one transaction."""
    with connection.cursor() as cursor:
        for statement in statements(connection.vendor, shown):
            cursor.execute(statement)  # no parameters: "%" is literal

"""Every write that changes what a room page shows bumps the room's version, in the database.

A member inserted or deleted, renamed or moved to another room bumps its room's version (both
rooms' for a move) and `changed_at`, in the writer's own transaction, whoever the writer is: the
forms, the admin, `QuerySet.update()`/`delete()`, `loaddata`, a data migration, plain SQL. Pages
and the cached member lists trust the version (docs/architecture.md), so the rule lives where no
writer can go around it. Presence bookkeeping (`last_seen_at`) bumps nothing.
"""

from django.db import migrations

SQLITE_BUMP = """
    UPDATE liveroom_room
    SET version = version + 1, changed_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
    WHERE id = {row}.room_id;
"""

CREATE = {
    "sqlite": [
        f"""CREATE TRIGGER liveroom_member_insert_bumps_room AFTER INSERT ON liveroom_member
        BEGIN {SQLITE_BUMP.format(row="NEW")} END""",
        f"""CREATE TRIGGER liveroom_member_delete_bumps_room AFTER DELETE ON liveroom_member
        BEGIN {SQLITE_BUMP.format(row="OLD")} END""",
        f"""CREATE TRIGGER liveroom_member_update_bumps_room AFTER UPDATE OF name, room_id
        ON liveroom_member WHEN OLD.name IS NOT NEW.name OR OLD.room_id IS NOT NEW.room_id
        BEGIN
            {SQLITE_BUMP.format(row="NEW")}
            UPDATE liveroom_room
            SET version = version + 1, changed_at = strftime('%Y-%m-%d %H:%M:%f', 'now')
            WHERE id = OLD.room_id AND OLD.room_id IS NOT NEW.room_id;
        END""",
    ],
    "postgresql": [
        """CREATE FUNCTION liveroom_member_bumps_room() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'DELETE' THEN
                UPDATE liveroom_room SET version = version + 1, changed_at = now()
                WHERE id = NEW.room_id;
            END IF;
            IF TG_OP = 'DELETE' OR OLD.room_id IS DISTINCT FROM NEW.room_id THEN
                UPDATE liveroom_room SET version = version + 1, changed_at = now()
                WHERE id = OLD.room_id;
            END IF;
            RETURN NULL;
        END
        $$""",
        """CREATE TRIGGER liveroom_member_insert_delete_bumps_room
        AFTER INSERT OR DELETE ON liveroom_member
        FOR EACH ROW EXECUTE FUNCTION liveroom_member_bumps_room()""",
        """CREATE TRIGGER liveroom_member_update_bumps_room
        AFTER UPDATE OF name, room_id ON liveroom_member FOR EACH ROW
        WHEN (OLD.name IS DISTINCT FROM NEW.name OR OLD.room_id IS DISTINCT FROM NEW.room_id)
        EXECUTE FUNCTION liveroom_member_bumps_room()""",
    ],
}

DROP = {
    "sqlite": [
        "DROP TRIGGER IF EXISTS liveroom_member_insert_bumps_room",
        "DROP TRIGGER IF EXISTS liveroom_member_delete_bumps_room",
        "DROP TRIGGER IF EXISTS liveroom_member_update_bumps_room",
    ],
    "postgresql": [
        "DROP TRIGGER IF EXISTS liveroom_member_insert_delete_bumps_room ON liveroom_member",
        "DROP TRIGGER IF EXISTS liveroom_member_update_bumps_room ON liveroom_member",
        "DROP FUNCTION IF EXISTS liveroom_member_bumps_room()",
    ],
}


def run(statements):
    def apply(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor not in statements:
            raise NotImplementedError(
                f"liveroom keeps room versions with triggers on SQLite and PostgreSQL, not {vendor}"
            )
        for statement in statements[vendor]:
            schema_editor.execute(statement, params=None)  # no placeholders: "%" is literal

    return apply


class Migration(migrations.Migration):

    dependencies = [
        ("liveroom", "0003_room_changed_at"),
    ]

    operations = [
        migrations.RunPython(run(CREATE), run(DROP), elidable=False),
    ]

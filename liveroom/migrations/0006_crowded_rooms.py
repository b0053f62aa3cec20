"""Crowded rooms read only what they show (liveroom/rooms/crowds.py): a room's member count, kept
by the triggers (liveroom/rooms/triggers.py: installed here, before the count is filled in, so no
write between the two is missed), a room's members by when they joined, and, on PostgreSQL, a
trigram index on names so a search by part of one does not scan a room of 50,000. pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner
may create it. Where it cannot be, search still works, scanning the room."""

import logging

from django.db import migrations, models, transaction

logger = logging.getLogger(__name__)

TRIGRAM_INDEX = "member_name_trigram"


def add_trigram_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    try:
        with transaction.atomic(using=schema_editor.connection.alias):
            schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except Exception as error:  # no privilege, or the extension is not installed
        logger.warning("No trigram index for member search (%s); search scans the room", error)
        return
    # The expression Django's icontains compares on PostgreSQL: UPPER(name::text).
    schema_editor.execute(
        f"CREATE INDEX IF NOT EXISTS {TRIGRAM_INDEX} ON liveroom_member "
        "USING gin ((UPPER(name::text)) gin_trgm_ops)"
    )


def count_members(apps, schema_editor) -> None:
    from liveroom.rooms import triggers

    triggers.install(schema_editor.connection)
    schema_editor.execute(
        "UPDATE liveroom_room SET member_count = "
        "(SELECT COUNT(*) FROM liveroom_member WHERE liveroom_member.room_id = liveroom_room.id)"
    )


def drop_trigram_index(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX IF EXISTS {TRIGRAM_INDEX}")


class Migration(migrations.Migration):

    dependencies = [
        ("liveroom", "0005_member_hand_raised"),
    ]

    operations = [
        migrations.AddField(
            model_name="room",
            name="member_count",
            field=models.PositiveIntegerField(db_default=0, default=0, verbose_name="members"),
        ),
        migrations.RunPython(count_members, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name="member",
            index=models.Index(fields=["room", "joined_at", "id"], name="member_room_joined"),
        ),
        migrations.RunPython(add_trigram_index, drop_trigram_index),
    ]

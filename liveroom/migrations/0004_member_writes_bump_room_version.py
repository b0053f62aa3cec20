"""Every write of a member that pages would show bumps its room's version, in the database
(liveroom/rooms/triggers.py, which also installs them again after every migrate)."""

from django.db import migrations


def install(apps, schema_editor):
    from liveroom.rooms import triggers

    triggers.install(schema_editor.connection, shown=("name",))


class Migration(migrations.Migration):

    dependencies = [
        ("liveroom", "0003_room_changed_at"),
    ]

    operations = [
        migrations.RunPython(install, migrations.RunPython.noop, elidable=False),
    ]

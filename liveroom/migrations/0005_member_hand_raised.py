"""A member can raise a hand: a field pages show (Member.SHOWN_FIELDS), so the triggers cover it
(liveroom/rooms/triggers.py, installed again after every migrate)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("liveroom", "0004_member_writes_bump_room_version"),
    ]

    operations = [
        migrations.AddField(
            model_name="member",
            name="hand_raised",
            field=models.BooleanField(db_default=False, default=False),
        ),
    ]

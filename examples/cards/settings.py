"""A project built on liveroom that shows members as cards with an initial: its own settings,
liveroom's with its template and static folders first (docs/templates.md walks through it)."""

from pathlib import Path

from liveroom.settings import *  # noqa: F403
from liveroom.settings import STATICFILES_DIRS, TEMPLATES

HERE = Path(__file__).resolve().parent

TEMPLATES[0]["DIRS"] = [HERE / "templates", *TEMPLATES[0]["DIRS"]]
STATICFILES_DIRS = [HERE / "static", *STATICFILES_DIRS]

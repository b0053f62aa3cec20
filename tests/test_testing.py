"""liveroom.testing as a project built on liveroom uses it: docs/testing.md's example, run as
written, in a pytest of its own; and the page model's swaps against what htmx does."""

import os
import re
import subprocess
import sys
import uuid

from harness.servers import ROOT
from liveroom.testing import Page

DOCS = ROOT / "docs" / "testing.md"


def test_the_docs_example_runs_as_written(tmp_path) -> None:
    example = re.search(r"```python\n(.*?)```", DOCS.read_text(), re.DOTALL)[1]
    assert len(example.strip().splitlines()) <= 8
    (tmp_path / "test_example.py").write_text(example)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["liveroom.testing.plugin"]\n')
    # A database and channels of its own: this session's tests use the usual ones.
    env = os.environ | {"LIVEROOM_CHANNEL_PREFIX": f"docs-{uuid.uuid4().hex[:8]}"}
    if database_url := os.environ.get("DATABASE_URL"):
        env["DATABASE_URL"] = database_url.rsplit("/", 1)[0] + "/liveroom_docs_example"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--ds=tests.settings",
         "-o", "asyncio_default_fixture_loop_scope=function", "--rootdir", str(tmp_path),
         str(tmp_path / "test_example.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert "1 passed" in result.stdout, result.stdout + result.stderr


def test_pushed_pieces_are_swapped_as_htmx_swaps_them() -> None:
    page = Page('<ul id="members"><li id="member-1"><span class="member__name">Ada</span></li></ul>'
                '<p id="member-count">1 person here</p><p id="announcement"></p>')  # fmt: skip
    joined = ('<ul hx-swap-oob="beforeend:#members:not(:has(#member-2))"><li id="member-2">'
              '<span class="member__name">Bob</span></li></ul>'
              '<p id="member-count" hx-swap-oob="true">2 people here</p>'
              '<p id="announcement" hx-swap-oob="innerHTML">Bob joined</p>')  # fmt: skip
    page.apply(joined)
    assert (page.members(), page.text("#member-count")) == (["Ada", "Bob"], "2 people here")
    assert page.text("#announcement") == "Bob joined"
    page.apply(joined)  # a repeat: htmx finds no target and says so; Bob is shown once
    assert page.members() == ["Ada", "Bob"]
    assert page.errors == ["htmx:oobErrorNoTarget #members:not(:has(#member-2))"]
    page.apply('<li id="member-1" hx-swap-oob="delete"></li>')
    page.apply('<tr id="member-2" hx-swap-oob="true"><td>dropped</td></tr>')  # as the parser does
    assert page.members() == ["Bob"]

import os
import subprocess
import sys

from harness.servers import ROOT


def load_settings(**env: str) -> subprocess.CompletedProcess:
    """Load the app as daphne does (settings, then the ASGI application), in a fresh process."""
    environment = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    environment.update(env, DJANGO_SETTINGS_MODULE="liveroom.settings")
    return subprocess.run(
        [sys.executable, "-c", "import liveroom.asgi"],
        cwd=ROOT, env=environment, capture_output=True, text=True,
    )  # fmt: skip


def test_debug_off_without_a_secret_key_refuses_to_start_with_a_clear_message() -> None:
    result = load_settings(DEBUG="0")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_on_runs_with_a_development_key() -> None:
    assert load_settings(DEBUG="1").returncode == 0


def test_commands_that_need_no_secret_run_without_one() -> None:
    environment = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    environment["DJANGO_SETTINGS_MODULE"] = "liveroom.settings"
    result = subprocess.run(
        [sys.executable, "manage.py", "makemigrations", "--check", "--dry-run"],
        cwd=ROOT, env=environment, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def test_a_malformed_boolean_is_a_clear_error() -> None:
    result = load_settings(DEBUG="maybe")
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_a_malformed_number_is_a_clear_error() -> None:
    result = load_settings(DEBUG="1", LIVEROOM_WATCH_INTERVAL="soon")
    assert result.returncode != 0
    assert "LIVEROOM_WATCH_INTERVAL must be a number, got 'soon'" in result.stderr


def test_a_negative_interval_is_a_clear_error() -> None:
    result = load_settings(DEBUG="1", LIVEROOM_ROOMS_REFRESH_SECONDS="-1")
    assert result.returncode != 0
    assert "LIVEROOM_ROOMS_REFRESH_SECONDS must be 0 or more, got -1.0." in result.stderr


def test_a_process_needs_at_least_one_reader_thread_and_one_cached_room() -> None:
    for name in ("LIVEROOM_READ_THREADS", "LIVEROOM_CACHED_ROOMS"):
        result = load_settings(DEBUG="1", **{name: "0"})
        assert result.returncode != 0
        assert f"{name} must be at least 1, got 0." in result.stderr

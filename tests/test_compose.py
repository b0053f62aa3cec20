"""compose.yaml follows the compose spec, and the commands it runs work here as written.

There is no Docker engine on CI, so the test runs the `migrate` and `web` commands itself, with
the services' environment, pointed at this machine's database and Redis instead of the
containers' host names.
"""

import os
import re
import subprocess
import sys

import pytest
import requests
from ruamel.yaml import YAML

from tests.servers import ROOT, free_port

COMPOSE = ROOT / "compose.yaml"
VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:-|:\?)(?P<arg>[^}]*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """The compose spec's ${VAR}, ${VAR:-default} and ${VAR:?error} forms."""

    def replace(match: re.Match) -> str:
        name, op, arg = match["name"], match["op"], match["arg"]
        if env.get(name):
            return env[name]
        if op == ":?":
            raise ValueError(f"{name}: {arg}")
        return arg if op == ":-" else ""

    return VARIABLE.sub(replace, value)


def load_compose() -> dict:
    return YAML(typ="safe").load(COMPOSE.read_text())


def executable(command: list[str]) -> list[str]:
    # The image puts python and daphne on PATH; here they are this virtualenv's.
    if command[0] == "python":
        return [sys.executable, *command[1:]]
    return [sys.executable, "-m", command[0], *command[1:]]


def test_compose_file_follows_the_compose_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_are_wired_as_documented() -> None:
    services = load_compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web"}
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    assert services["web"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert services["migrate"]["build"] == services["web"]["build"] == "."
    assert (ROOT / "Dockerfile").exists()
    assert "version" not in load_compose()


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    environment = load_compose()["services"]["web"]["environment"]
    with pytest.raises(ValueError, match="SECRET_KEY"):
        interpolate(environment["SECRET_KEY"], {})


def test_compose_commands_migrate_and_serve_the_app(server_env, start_server) -> None:
    services = load_compose()["services"]
    port = free_port()
    variables = {"SECRET_KEY": "compose-test-secret", "WEB_PORT": str(port)}
    # As in the container: no settings module given, so manage.py and asgi.py pick the app's.
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        {k: interpolate(str(v), variables) for k, v in services["web"]["environment"].items()}
    )
    # The containers' host names do not resolve here: use this machine's servers instead.
    env["DATABASE_URL"] = server_env["DATABASE_URL"]
    env["LIVEROOM_CHANNEL_PREFIX"] = server_env["LIVEROOM_CHANNEL_PREFIX"]
    if os.environ.get("REDIS_URL"):
        env["REDIS_URL"] = os.environ["REDIS_URL"]
    else:
        env.pop("REDIS_URL")

    migrate = [interpolate(str(part), variables) for part in services["migrate"]["command"]]
    subprocess.run(executable(migrate), cwd=ROOT, env=env, check=True)

    web = [interpolate(str(part), variables) for part in services["web"]["command"]]
    server = start_server(env=env, command=executable(web), port=port)
    assert requests.get(f"{server.url}/", allow_redirects=False, timeout=5).status_code == 302
    htmx = requests.get(f"{server.url}/static/django_htmx/htmx-2.min.js", timeout=5)
    assert htmx.status_code == 200
    assert "htmx" in htmx.text

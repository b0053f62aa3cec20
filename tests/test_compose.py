"""compose.yaml follows the compose spec, and the commands it runs work here as written.

There is no Docker engine on CI, so the test runs the `migrate` and `web` commands itself, with
the services' environment, pointed at this machine's database and Redis instead of the
containers' host names.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import requests
from django.conf import settings

from harness.proxy import haproxy_binary
from harness.servers import COMPOSE, ROOT, compose_web_command, executable, free_port, load_compose

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


def test_compose_file_follows_the_compose_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_services_are_wired_as_documented() -> None:
    services = load_compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "proxy"}
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"][1]
    assert services["web"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "redis": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert services["migrate"]["build"] == services["web"]["build"] == "."
    assert (ROOT / "Dockerfile").exists()
    assert "version" not in load_compose()


def test_compose_puts_haproxy_with_the_tested_config_in_front_of_several_processes() -> None:
    services = load_compose()["services"]
    web, proxy = services["web"], services["proxy"]
    assert interpolate(str(web["deploy"]["replicas"]), {}) == "2"
    assert "ports" not in web  # reached through the proxy only
    assert "/healthz" in " ".join(web["healthcheck"]["test"])
    assert "--proxy-headers" in web["command"]
    assert proxy["image"] == "haproxy:2.6"  # the version the proxy tests run (Debian 12's)
    assert proxy["volumes"] == ["./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro"]
    assert proxy["depends_on"] == {"web": {"condition": "service_healthy"}}
    version = subprocess.run([haproxy_binary(), "-v"], capture_output=True, text=True).stdout
    assert version.startswith("HAProxy version 2.6."), version
    check = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(ROOT / "deploy" / "haproxy.cfg")],
        env={"LIVEROOM_PROXY_ADDRESS": proxy["environment"]["LIVEROOM_PROXY_ADDRESS"]},
        capture_output=True, text=True,
    )  # fmt: skip
    assert check.returncode == 0, check.stdout + check.stderr


def test_the_image_serves_static_files_under_hashed_names_for_a_year(
    server_env, start_server, tmp_path
) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "STATIC_ROOT=/app/staticfiles" in dockerfile
    collect = "python manage.py collectstatic --no-input -v 0"
    assert f"RUN {collect}\n" in dockerfile
    env = server_env | {"STATIC_ROOT": str(tmp_path / "staticfiles")}
    subprocess.run(executable(collect.split()), cwd=ROOT, env=env, check=True)
    server = start_server(env=env)
    page = requests.get(f"{server.url}/room/join/", timeout=5).text
    css = re.search(r'href="(/static/liveroom/liveroom\.[0-9a-f]{12}\.css)"', page)
    assert css, "the page links the stylesheet by its hashed name"
    response = requests.get(f"{server.url}{css[1]}", headers={"Accept-Encoding": "gzip"}, timeout=5)
    assert response.status_code == 200
    assert "max-age=315360000" in response.headers["Cache-Control"]
    assert "immutable" in response.headers["Cache-Control"]
    assert response.headers.get("Content-Encoding") == "gzip"


def test_the_image_carries_the_catalogues_of_every_language() -> None:
    # Without them the image would serve English whatever the browser asks for.
    copied = re.findall(r"^COPY (\S+) ", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    for path in settings.LOCALE_PATHS:
        assert Path(path).relative_to(ROOT).parts[0] in copied


def test_compose_refuses_to_start_without_a_secret_key() -> None:
    environment = load_compose()["services"]["web"]["environment"]
    with pytest.raises(ValueError, match="SECRET_KEY"):
        interpolate(environment["SECRET_KEY"], {})


def test_compose_commands_migrate_and_serve_the_app(server_env, start_server) -> None:
    services = load_compose()["services"]
    port, metrics_port = free_port(), free_port()
    variables = {"SECRET_KEY": "compose-test-secret"}
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
    assert env["LIVEROOM_METRICS_ADDRESS"] == "0.0.0.0:9100"  # each container has its own
    env["LIVEROOM_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_port}"

    migrate = [interpolate(str(part), variables) for part in services["migrate"]["command"]]
    subprocess.run(executable(migrate), cwd=ROOT, env=env, check=True)

    server = start_server(env=env, command=compose_web_command(port), port=port)
    assert requests.get(f"{server.url}/", allow_redirects=False, timeout=5).status_code == 302
    healthcheck = [
        part.replace(":8000/", f":{port}/") for part in services["web"]["healthcheck"]["test"][1:]
    ]
    subprocess.run(executable(healthcheck), cwd=ROOT, env=env, check=True, timeout=10)
    metrics = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    assert "liveroom_open_pages" in metrics
    htmx = requests.get(f"{server.url}/static/django_htmx/htmx-2.min.js", timeout=5)
    assert htmx.status_code == 200
    assert "htmx" in htmx.text

"""docs/configuration.md describes every environment variable the code reads, once, and no
other."""

import ast
import re

from harness.servers import ROOT

# liveroom's helpers that read one variable, named by their first argument.
READERS = {"env_bool", "env_list", "env_number", "env_rate", "whole_number"}


def variables_read() -> dict[str, str]:
    """Each variable the package reads, and the first file that reads it."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "liveroom").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Call) and node.args:
                function = ast.unparse(node.func)
                if function in READERS | {"os.environ.get", "os.getenv"}:
                    name = node.args[0]
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "dj_database_url.config":
                name = next(kw.value for kw in node.keywords if kw.arg == "env")
            elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
                name = node.slice
            if isinstance(name, ast.Constant) and isinstance(name.value, str):
                found.setdefault(name.value, str(path.relative_to(ROOT)))
    return found


def variables_described() -> list[str]:
    text = (ROOT / "docs" / "configuration.md").read_text()
    return re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", text, re.M)


def test_every_variable_the_code_reads_is_described_once() -> None:
    described = variables_described()
    assert len(described) == len(set(described)), "described twice"
    read = variables_read()
    assert {name: read[name] for name in read.keys() - set(described)} == {}, "not described"
    assert set(described) - read.keys() == set(), "described but never read"


def test_the_check_finds_what_it_looks_for() -> None:
    read = variables_read()
    # One of each way of reading: a helper, os.environ.get, the server's own helper.
    assert read["DATABASE_POOL_SIZE"] == "liveroom/settings.py"
    assert read["REDIS_URL"] == "liveroom/settings.py"
    assert read["LIVEROOM_REQUESTS_AT_ONCE"] == "liveroom/server/__main__.py"

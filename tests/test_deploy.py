"""The Dockerfile and docker-compose.yml, tested as far as a machine without a container engine can."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from server.config import Config
from tests.deploy_pending import PENDING_COMMANDS, PENDING_ENV
from tests.live import live_server

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
CONFIG_ENV = {f.metadata["env"] for f in dataclasses.fields(Config)}


def _instructions() -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [tuple(line.split(None, 1)) for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def _commands() -> set[str]:
    """The subcommands of `python -m server`, from its own --help."""
    out = subprocess.run([sys.executable, "-m", "server", "--help"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return set(re.search(r"\{([a-z,-]+)\}", out).group(1).split(","))


def _app_services() -> dict[str, dict]:
    return {name: s for name, s in COMPOSE["services"].items() if s.get("image", "").startswith("blog-api")}


def test_dockerfile_shape():
    instructions = _instructions()
    stages = [args for op, args in instructions if op == "FROM"]
    assert len(stages) == 2 and all(s.startswith("python:3.11-slim") for s in stages)
    users = [args for op, args in instructions if op == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert json.loads(dict(instructions)["CMD"]) == ["python", "-m", "server", "serve"]
    assert "/healthz" in dict(instructions)["HEALTHCHECK"] and "curl" not in dict(instructions)["HEALTHCHECK"]


def test_dockerfile_copies_files_that_exist():
    sources = []
    for op, args in _instructions():
        if op == "COPY" and "--from=" not in args:
            sources += args.split()[:-1]
    assert {"server/", "sql/", "setup.cfg", "pyproject.toml", "README.md"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), source
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not {"server", "sql", "README.md", "setup.cfg"} & set(ignored)


def test_the_image_commands_exist():
    commands = _commands()
    assert "serve" in commands and "migrate" in commands
    used = {json.loads(dict(_instructions())["CMD"])[3]}
    used |= {s["command"][3] for s in _app_services().values() if "command" in s}
    missing = used - commands - PENDING_COMMANDS
    assert not missing, f"commands the deployment runs that do not exist: {missing}"
    landed = PENDING_COMMANDS & commands
    assert not landed, f"landed: delete from tests/deploy_pending.py: {landed}"


def test_compose_services_and_environment():
    services = COMPOSE["services"]
    assert services["postgres"]["image"] == "postgres:15" and services["redis"]["image"] == "redis:7"
    assert services["api"]["deploy"]["replicas"] > 1
    assert {"worker", "mailpit", "migrate", "nginx"} <= set(services)
    names = set()
    for name, service in _app_services().items():
        names |= set(service["environment"])
    unknown = names - CONFIG_ENV - PENDING_ENV
    assert not unknown, f"variables the compose file sets that Config does not read: {unknown}"
    landed = PENDING_ENV & CONFIG_ENV
    assert not landed, f"landed: delete from tests/deploy_pending.py: {landed}"
    assert {"DATABASE_URL", "REDIS_URL", "HOST", "PORT", "JWT_PRIVATE_KEY_FILE"} <= names
    for path in ("deploy/nginx.conf", "deploy/prometheus.yml"):
        assert (ROOT / path).is_file()


def test_compose_keeps_secrets_out_of_the_file():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${POSTGRES_PASSWORD:?" in text  # required, no default
    assert "deploy/jwt-private.pem" in (ROOT / ".gitignore").read_text()


@pytest.mark.slow
def test_the_healthcheck_command_works(base_config, tmp_root):
    healthcheck = json.loads(re.search(r"CMD (\[.*\])", dict(_instructions())["HEALTHCHECK"]).group(1))
    with live_server(base_config, tmp_root / "healthcheck-server") as server:
        port = server.url.rsplit(":", 1)[1]
        ok = subprocess.run([sys.executable, *healthcheck[1:]], env={"PORT": port}, capture_output=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        with urllib.request.urlopen(server.url + "/healthz") as response:
            assert response.status == 200
    down = subprocess.run([sys.executable, *healthcheck[1:]], env={"PORT": port}, capture_output=True, timeout=30)
    assert down.returncode != 0

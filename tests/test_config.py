"""Config from the environment: parsing, errors, redaction, and the README's reference table."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from server.config import Config, ConfigError, redact_url

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults_and_overrides_from_the_environment():
    config = Config.from_env({"PORT": "9000", "LOG_LEVEL": "debug", "PG_POOL_MAX": "64", "HOST": ""})
    assert (config.port, config.log_level, config.pg_pool_max, config.host) == (9000, "debug", 64, "127.0.0.1")
    assert config.embedded and config.effective_log_format == "text"
    prod = Config.from_env({"DATABASE_URL": "postgresql://a:b@db/x", "REDIS_URL": "redis://r"})
    assert not prod.embedded and prod.effective_log_format == "json"


@pytest.mark.parametrize("env, needle", [
    ({"PORT": "eighty"}, "PORT='eighty'"),
    ({"PORT": "70000"}, "PORT must be"),
    ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be"),
    ({"PG_POOL_MIN": "50", "PG_POOL_MAX": "10"}, "PG_POOL_MIN"),
    ({"HASH_THREADS": "0"}, "HASH_THREADS must be positive"),
])
def test_bad_values_are_named(env, needle):
    with pytest.raises(ConfigError, match=re.escape(needle)):
        Config.from_env(env)


def test_repr_hides_passwords():
    config = Config.from_env({"DATABASE_URL": "postgresql://app:s3cret@db:5432/app",
                              "REDIS_URL": "redis://:r3dis@cache:6379/0"})
    assert "s3cret" not in repr(config) and "r3dis" not in repr(config)
    assert redact_url("postgresql://app:s3cret@db:5432/app") == "postgresql://app:***@db:5432/app"


def test_readme_reference_matches_config():
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \| ([^|]+) \|$", README.read_text(), re.M)
    documented = {name: (default.strip(), meaning.strip()) for name, default, meaning in rows}
    for f in dataclasses.fields(Config):
        env = f.metadata["env"]
        assert env in documented, f"{env} is missing from the README"
        default = "unset" if f.default in (None, "") else f"`{f.default}`"
        assert documented[env][0] == default, env
        assert documented[env][1] == f.metadata["doc"], env
    assert set(documented) == {f.metadata["env"] for f in dataclasses.fields(Config)}

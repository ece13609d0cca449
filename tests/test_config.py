"""Settings: defaults, validation, and that every setting is documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from gochat.cli import build_parser
from gochat.config import Config, ConfigError, settings

from .conftest import ROOT, daemon_env


def test_defaults_are_the_documented_ones():
    """A fresh machine runs on 0.0.0.0:8080 / 8443 with the issue's limits."""
    config = Config.from_env({})
    assert (config.host, config.port, config.tls_port) == ("0.0.0.0", 8080, 8443)
    assert (config.rate_messages, config.rate_window) == (5, 10.0)
    assert config.max_conn_per_ip == 10 and config.max_connections == 10000
    assert config.sendq_bytes == 256 * 1024 and config.max_line_bytes == 8192
    assert config.color_default


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"GOCHAT_PORT": "abc"}, "GOCHAT_PORT"),
        ({"GOCHAT_PORT": "70000"}, "GOCHAT_PORT"),
        ({"GOCHAT_RATE_MESSAGES": "-1"}, "GOCHAT_RATE_MESSAGES"),
        ({"GOCHAT_COLOR": "sometimes"}, "GOCHAT_COLOR"),
        ({"GOCHAT_IDLE_TIMEOUT": "soon"}, "GOCHAT_IDLE_TIMEOUT"),
    ],
)
def test_invalid_value_names_the_setting(env, name):
    """A bad value is one error naming the variable."""
    with pytest.raises(ConfigError, match=name):
        Config.from_env(env)


def test_no_color_and_gochat_color():
    """NO_COLOR turns colour off by default; GOCHAT_COLOR=always wins over it."""
    assert not Config.from_env({"NO_COLOR": "1"}).color_default
    assert Config.from_env({"NO_COLOR": "1", "GOCHAT_COLOR": "always"}).color_default
    assert not Config.from_env({"GOCHAT_COLOR": "never"}).color_default


def test_flags_override_environment():
    """--port beats GOCHAT_PORT."""
    config = Config.from_env({"GOCHAT_PORT": "9000"}, {"port": "9001"})
    assert config.port == 9001


def test_help_lists_every_setting():
    """`gochat --help` names every environment variable with its default."""
    text = build_parser().format_help()
    for f, default in settings():
        assert f.metadata["env"] in text
        assert f"(default: {default})" in text


def test_env_example_and_readme_document_every_setting():
    """.env.example and README name every setting with its default."""
    with open(os.path.join(ROOT, ".env.example"), encoding="utf-8") as fh:
        example = fh.read()
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        readme = fh.read()
    for f, default in settings():
        env = f.metadata["env"]
        assert re.search(rf"^#?\s*{env}={re.escape(default)}\s*$", example, re.M), env
        assert f"`{env}`" in readme, env


FLOAT_SETTINGS = [
    f.metadata["env"]
    for f, _ in settings()
    if f.type in ("float", float) and f.metadata["parse"] is None
]


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "Infinity", "1e999"])
@pytest.mark.parametrize("env", FLOAT_SETTINGS)
def test_non_finite_floats_are_refused(env, raw):
    """float() takes 'nan' and 'inf'; nan then passes every `minimum` comparison.

    GOCHAT_NAME_TIMEOUT=nan made every connection fail with a traceback, and
    no float setting has a use for infinity (0 already means "no limit" where
    one is meant), so a non-finite value is one error naming the setting.
    """
    with pytest.raises(ConfigError, match=rf"^{env}='{raw}': not a finite number$"):
        Config.from_env({env: raw})


def test_non_finite_flag_exits_2_with_one_line():
    """Through the command line: exit 2 and the usual `invalid setting` line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "gochat", "--env-file", os.devnull],
        env={**daemon_env(), "GOCHAT_NAME_TIMEOUT": "nan"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert (
        result.stderr == "gochat: invalid setting: GOCHAT_NAME_TIMEOUT='nan': not a finite number\n"
    )

"""geoshare.settings: environment values that cannot be parsed stop the start."""

import os
import subprocess
import sys

import pytest

from tests.servers import ROOT

SETUP = "import django; django.setup(); from django.conf import settings as s; "


def _start(code, **env):
    environ = {**os.environ, "DJANGO_SETTINGS_MODULE": "geoshare.settings", "DEBUG": "1"}
    environ.update(env)
    return subprocess.run([sys.executable, "-c", SETUP + code], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    ("name", "value"),
    [("DEBUG", "flase"), ("DEBUG", "2"), ("DEBUG", "yes please"),
     ("SECURE_HSTS_PRELOAD", "ture")],
)
def test_an_unknown_boolean_is_refused_naming_variable_and_value(name, value):
    env = {name: value}
    if name != "DEBUG":
        env.update(DEBUG="0", SECRET_KEY="k" * 50, ALLOWED_HOSTS="maps.example.org")
    result = _start("print(s.DEBUG)", **env)
    assert result.returncode == 1
    assert "ImproperlyConfigured" in result.stderr
    assert f"{name}={value!r}" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("value", ["fast", "1.5", "10ms", "0x10"])
def test_a_non_integer_is_refused_naming_variable_and_value(value):
    result = _start("print(s.GEOSHARE['TICK_MS'])", GEOSHARE_TICK_MS=value)
    assert result.returncode == 1
    assert "ImproperlyConfigured" in result.stderr
    assert f"GEOSHARE_TICK_MS={value!r}" in result.stderr


def test_good_values_and_defaults_still_work():
    result = _start("print(s.DEBUG, s.GEOSHARE['TICK_MS'], s.GEOSHARE['FLOOD_PER_S'])",
                    DEBUG=" Yes ", GEOSHARE_TICK_MS=" 250 ", GEOSHARE_FLOOD_PER_S="")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "250", "200"]

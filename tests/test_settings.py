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


def test_the_owntracks_friends_window_comes_from_the_environment():
    code = "print(s.GEOSHARE['OWNTRACKS_FRIENDS_EVERY_S'])"
    assert _start(code).stdout.split() == ["10"]
    assert _start(code, GEOSHARE_OWNTRACKS_FRIENDS_EVERY_S="0").stdout.split() == ["0"]
    refused = _start(code, GEOSHARE_OWNTRACKS_FRIENDS_EVERY_S="10s")
    assert refused.returncode == 1
    assert "GEOSHARE_OWNTRACKS_FRIENDS_EVERY_S='10s'" in refused.stderr


def test_without_secret_key_and_debug_off_a_key_is_generated_once(tmp_path):
    env = {"DEBUG": "0", "SECRET_KEY": "", "ALLOWED_HOSTS": "maps.example.org",
           "GEOSHARE_DATA_DIR": str(tmp_path)}
    first = _start("print(s.SECRET_KEY)", **env)
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "secret_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(key) >= 50 and first.stdout.strip() == key
    assert "generated one into" in first.stderr
    second = _start("print(s.SECRET_KEY)", **env)
    assert second.stdout.strip() == key
    assert "generated" not in second.stderr


def test_management_commands_run_from_a_plain_shell_with_debug_off(tmp_path):
    env = {**os.environ, "DEBUG": "0", "ALLOWED_HOSTS": "maps.example.org",
           "GEOSHARE_DATA_DIR": str(tmp_path)}
    env.pop("SECRET_KEY", None)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "SECRET_KEY must be set" not in result.stderr


def test_direct_write_is_off_by_default_and_switched_on_from_the_environment():
    code = "print(s.GEOSHARE['DIRECT_WRITE'])"
    assert _start(code, GEOSHARE_DIRECT_WRITE="").stdout.split() == ["True"]
    assert _start(code, GEOSHARE_DIRECT_WRITE="0").stdout.split() == ["False"]
    refused = _start(code, GEOSHARE_DIRECT_WRITE="of")
    assert refused.returncode == 1
    assert "GEOSHARE_DIRECT_WRITE='of'" in refused.stderr

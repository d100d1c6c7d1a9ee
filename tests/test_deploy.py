"""The deployment files keep their promises: the Dockerfile, docker/compose.yaml, the
Caddyfile, the environment example and the README's configuration table, the systemd
units beside nginx's site, and the Prometheus rules (docs/deploy.md).

No Docker daemon is needed: Debian's docker-compose validates and resolves the compose
file by itself, and caddy validates its configuration without serving it.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib

import orjson
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.servers import ROOT, skip_or_fail

slow = pytest.mark.slow

DOCKER = ROOT / "docker"
COMPOSE_WORKER_PORT = "8000"
SECRETS = {"POSTGRES_PASSWORD": "pg-secret-0123", "REDIS_PASSWORD": "redis-secret-0123",
           "SECRET_KEY": "k" * 50, "ACME_EMAIL": "ops@example.org"}


# -- Dockerfile ------------------------------------------------------------------------------


def dockerfile(path=DOCKER / "Dockerfile"):
    """Return the Dockerfile's instructions as ``[(INSTRUCTION, arguments text)]``.

    Comments and blank lines are dropped; continuation lines (a trailing backslash)
    are joined, as Docker reads them.
    """
    instructions, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, arguments = text.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def runs(instructions, needle):
    return [args for keyword, args in instructions if keyword == "RUN" and needle in args]


def test_dockerfile_keeps_its_promises():
    instructions = dockerfile()
    keywords = [keyword for keyword, _ in instructions]
    assert instructions[0] == ("FROM", "python:3.11-slim")
    # A non-root user, taken after the last step that needs root.
    users = [i for i, keyword in enumerate(keywords) if keyword == "USER"]
    assert users, "no USER instruction: the service would run as root"
    user = instructions[users[-1]][1]
    assert user not in ("root", "0") and not user.startswith(("root:", "0:"))
    assert max(i for i, k in enumerate(keywords) if k == "RUN") < users[-1]
    assert runs(instructions, "useradd") and user in runs(instructions, "useradd")[0]
    # Dependencies from the lock file, copied in before it is read.
    (install,) = runs(instructions, "requirements.lock")
    assert "pip install" in install
    copied = [i for i, (k, a) in enumerate(instructions)
              if k == "COPY" and "requirements.lock" in a]
    assert copied and copied[0] < instructions.index(("RUN", install))
    # Static files collected at build time.
    assert runs(instructions, "manage.py collectstatic")
    # A health check on /healthz, and the one way geoshare is served.
    (healthcheck,) = [a for k, a in instructions if k == "HEALTHCHECK"]
    assert "geoshare.probe" in healthcheck and "/healthz" in healthcheck
    (command,) = [a for k, a in instructions if k == "CMD"]
    assert orjson.loads(command) == ["python", "-m", "geoshare.serving", "--host",
                                     "0.0.0.0", "--port", COMPOSE_WORKER_PORT]
    assert ("EXPOSE", COMPOSE_WORKER_PORT) in instructions
    # Everything it copies exists; everything the settings read at run time is copied.
    sources = [a.split()[0] for k, a in instructions if k == "COPY"]
    for source in sources:
        assert (ROOT / source).exists(), source
    for needed in ("manage.py", "geoshare", "maps", "templates", "static", "locale"):
        assert needed in sources, needed


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for path in (".git", ".venv", "data", "staticfiles", "docker/.env"):
        assert path in ignored, path


def locked(path):
    """Return a lock file's pins as ``{canonical name: (version, [sha256 hashes])}``."""
    pins, name = {}, None
    for line in path.read_text().splitlines():
        if match := re.match(r"^([A-Za-z0-9._-]+)==(\S+)", line):
            name = canonicalize_name(match[1])
            pins[name] = (match[2], [])
        elif match := re.match(r"^\s+--hash=sha256:([0-9a-f]{64})", line):
            pins[name][1].append(match[1])
        elif line.strip() and not line.lstrip().startswith("#"):
            pytest.fail(f"{path.name}: a line that is neither a pin nor a hash: {line!r}")
    return pins


def lock_command(path):
    """Return the command in a lock file's header, the one that regenerates it."""
    lines = path.read_text().splitlines()
    assert lines[0] == "# This file was autogenerated by uv via the following command:"
    return shlex.split(lines[1].lstrip("# "))


def assert_pinned_within(requirements, pins, lock):
    environment = {"sys_platform": "linux", "platform_system": "Linux",
                   "platform_machine": "x86_64", "python_version": "3.11"}
    for line in requirements:
        requirement = Requirement(line)
        if requirement.marker and not requirement.marker.evaluate(environment):
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{lock} does not pin {requirement.name}: make lock"
        assert requirement.specifier.contains(pins[name][0], prereleases=True), (
            f"{lock} pins {name}=={pins[name][0]}, outside {line!r}: make lock")


def test_dockerfile_installs_the_locked_dependencies_of_pyproject():
    (install,) = runs(dockerfile(), "requirements.lock")
    words = shlex.split(install)
    assert words[:2] == ["pip", "install"] and "--require-hashes" in words
    assert words[words.index("-r") + 1] == "requirements.lock"
    pins = locked(ROOT / "requirements.lock")
    assert all(hashes for _, hashes in pins.values())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert_pinned_within(project["dependencies"], pins, "requirements.lock")
    assert "prometheus-client" in pins
    command = lock_command(ROOT / "requirements.lock")
    assert command[:4] == ["uv", "pip", "compile", "pyproject.toml"]
    assert "--extra" not in command and "--generate-hashes" in command
    assert command[command.index("-o") + 1] == "requirements.lock"


def test_the_dev_lock_runs_the_images_versions_and_the_extras():
    """make test installs requirements-dev.lock: the runtime pins are the image's, so the
    suite tests what the image runs, and the test and bench extras are pinned too."""
    runtime = locked(ROOT / "requirements.lock")
    dev = locked(ROOT / "requirements-dev.lock")
    assert all(hashes for _, hashes in dev.values())
    for name, (version, _) in runtime.items():
        assert dev.get(name, (None,))[0] == version, f"{name}: the two locks differ"
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert_pinned_within(extras["test"] + extras["bench"], dev, "requirements-dev.lock")
    command = lock_command(ROOT / "requirements-dev.lock")
    assert command[:4] == ["uv", "pip", "compile", "pyproject.toml"]
    assert [command[i + 1] for i, w in enumerate(command) if w == "--extra"] == [
        "test", "bench"]
    assert command[command.index("-o") + 1] == "requirements-dev.lock"
    # Both from one platform, the image's.
    assert [w for w in command if w not in ("--extra", "test", "bench")] == [
        w.replace("requirements.lock", "requirements-dev.lock")
        for w in lock_command(ROOT / "requirements.lock")]


@slow
def test_the_build_collectstatic_step_runs_with_the_settings_it_sets(tmp_path):
    (step,) = runs(dockerfile(), "manage.py collectstatic")
    words = shlex.split(step.split("&&")[0])
    assignments = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_]+=", w))
    command = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    assert command[:2] == ["python", "manage.py"]
    assert assignments["DEBUG"] == "0"
    env = {"PATH": os.environ["PATH"], **assignments,
           "DATABASE_URL": f"sqlite:///{tmp_path / 'build.sqlite3'}",
           "STATIC_ROOT": str(tmp_path / "staticfiles")}
    result = subprocess.run([sys.executable, *command[1:]], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "staticfiles" / "maps" / "js" / "main.js").exists()
    assert (tmp_path / "staticfiles" / "maps" / "js" / "main.js.gz").exists()


# -- configuration: settings, README, .env.example ----------------------------------------------


def settings_variables():
    """Every environment variable geoshare/settings.py reads."""
    text = (ROOT / "geoshare" / "settings.py").read_text()
    found = set(re.findall(r'(?:env_\w+|os\.environ\.get)\(\s*"([A-Z][A-Z0-9_]*)"', text))
    assert {"DEBUG", "SECRET_KEY", "GEOSHARE_TILE_URL", "GEOSHARE_METRICS_TOKEN"} <= found
    return found


def readme_variables():
    """The variables of README.md's configuration table."""
    text = (ROOT / "README.md").read_text()
    table = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([A-Z][A-Z0-9_]*)` \|", table, re.MULTILINE))


def env_example():
    values = {}
    for line in (DOCKER / ".env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def test_readme_lists_every_variable_the_settings_read_and_no_other():
    assert readme_variables() == settings_variables()


def test_env_example_has_every_readme_variable():
    example = env_example()
    missing = readme_variables() - set(example)
    assert not missing, missing
    assert example["DEBUG"] == "0"
    for required in ("SECRET_KEY", "POSTGRES_PASSWORD", "REDIS_PASSWORD", "ACME_EMAIL"):
        assert example[required] == "", f"{required} must be filled in by each site"


# -- compose ---------------------------------------------------------------------------------


def compose_config(tmp_path, **overrides):
    """Run ``docker-compose config`` on a copy of docker/ with .env from the example.

    Returns the ``CompletedProcess``; ``overrides`` replace values of the example.
    """
    if shutil.which("docker-compose") is None:
        skip_or_fail("docker-compose is not installed (apt-get install docker-compose): "
                     "cannot validate docker/compose.yaml")
    copy = tmp_path / "docker"
    shutil.copytree(DOCKER, copy)
    values = {**env_example(), **SECRETS, **overrides}
    (copy / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    # Only PATH and HOME: compose would prefer this shell's variables to .env.
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    return subprocess.run(
        ["docker-compose", "-f", str(copy / "compose.yaml"), "--profile", "monitoring",
         "config"], cwd=copy, env=env, capture_output=True, text=True, timeout=60)


def worker_services(services):
    return {name: s for name, s in services.items()
            if s.get("build", {}).get("dockerfile") == "docker/Dockerfile"
            and "command" not in s}


@slow
def test_compose_file_is_valid_and_wires_the_services(tmp_path):
    result = compose_config(tmp_path)
    assert result.returncode == 0, result.stderr
    config = yaml.safe_load(result.stdout)
    services = config["services"]
    workers = worker_services(services)
    assert len(workers) >= 2, sorted(services)
    subnet = config["networks"]["front"]["ipam"]["config"][0]["subnet"]
    for service in workers.values():
        env = service["environment"]
        assert env["DEBUG"] == "0"
        assert env["SECRET_KEY"] == SECRETS["SECRET_KEY"]
        assert env["DATABASE_URL"] == (
            f"postgres://geoshare:{SECRETS['POSTGRES_PASSWORD']}@postgres:5432/geoshare")
        assert env["REDIS_URL"] == f"redis://:{SECRETS['REDIS_PASSWORD']}@redis:6379/0"
        assert env["GEOSHARE_TRUSTED_PROXIES"] == subnet
        assert env["ALLOWED_HOSTS"] and env["CSRF_TRUSTED_ORIGINS"].startswith("https://")
        # Every variable of the README reaches the workers (from docker/.env).
        assert readme_variables() <= set(env), readme_variables() - set(env)
        # Migrations first, once; Redis up.
        assert service["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully")
        assert service["depends_on"]["redis"]["condition"] == "service_healthy"
        assert set(service["networks"]) == {"front", "back"}
    migrate = services["migrate"]
    assert migrate["command"] == ["python", "manage.py", "migrate", "--noinput"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    # PostgreSQL keeps its data in a named volume.
    (volume,) = services["postgres"]["volumes"]
    assert volume.split(":")[0] in config["volumes"]
    assert volume.split(":")[1] == "/var/lib/postgresql/data"
    # Caddy is the only way in, on the proxy's network.
    published = {(p["published"], p.get("protocol", "tcp"))
                 for p in services["caddy"]["ports"]}
    assert {(80, "tcp"), (443, "tcp")} <= published
    assert set(services["caddy"]["networks"]) == {"front"}
    for name in ("postgres", "redis", *workers, "migrate"):
        assert not services[name].get("ports"), name
    assert config["networks"]["back"]["internal"] is True
    # Pruning runs inside the workers: no cron job anywhere.
    assert "cron" not in result.stdout


@slow
def test_compose_refuses_to_start_without_the_secrets(tmp_path):
    result = compose_config(tmp_path, POSTGRES_PASSWORD="")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr


# -- Caddy ---------------------------------------------------------------------------------------


def caddy(tmp_path, *args):
    if shutil.which("caddy") is None:
        skip_or_fail("caddy is not installed (apt-get install caddy): cannot validate "
                     "docker/Caddyfile")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path),
           "XDG_DATA_HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path),
           "GEOSHARE_HOST": "maps.example.org", "ACME_EMAIL": "ops@example.org"}
    return subprocess.run(["caddy", *args, "--config", str(DOCKER / "Caddyfile"),
                           "--adapter", "caddyfile"], env=env, capture_output=True,
                          text=True, timeout=60)


def handlers(routes):
    """Every handler of a Caddy route list, subroutes included, with its matchers."""
    for route in routes:
        for handler in route.get("handle", ()):
            yield route.get("match", []), handler
            if handler["handler"] == "subroute":
                yield from handlers(handler["routes"])


@slow
def test_caddyfile_is_valid_and_proxies_to_the_compose_workers(tmp_path):
    validated = caddy(tmp_path, "validate")
    assert validated.returncode == 0, validated.stderr
    adapted = caddy(tmp_path, "adapt")
    assert adapted.returncode == 0, adapted.stderr
    assert '"level":"warn"' not in adapted.stderr, adapted.stderr
    config = orjson.loads(adapted.stdout)
    (server,) = config["apps"]["http"]["servers"].values()
    assert server["listen"] == [":443"]
    # Slow clients: bounded header and body reads.
    assert 0 < server["read_header_timeout"] <= 30e9
    assert 0 < server["read_timeout"] <= 60e9
    found = list(handlers(server["routes"]))
    (proxy,) = [h for _, h in found if h["handler"] == "reverse_proxy"]
    upstreams = {u["dial"] for u in proxy["upstreams"]}
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    workers = {name for name, s in compose["services"].items()
               if s.get("build") and "command" not in s}
    assert upstreams == {f"{name}:{COMPOSE_WORKER_PORT}" for name in workers}
    assert proxy["health_checks"]["active"]["uri"] == "/readyz"
    assert proxy["health_checks"]["active"]["headers"]["Host"] == ["maps.example.org"]
    # Longer than the WebSocket ping (20 s) plus its timeout (20 s).
    assert proxy["transport"]["read_timeout"] > 40e9
    limits = {tuple(m[0]["path"]) if m else (): h["max_size"]
              for m, h in found if h["handler"] == "request_body"}
    assert limits[("/ingest/*",)] == 256 * 1024


# -- without containers: systemd units and nginx ------------------------------------------------


def test_systemd_workers_and_nginx_upstream_name_the_same_ports():
    from tests.test_topology import SITE, unit_service

    argv, environment = unit_service()
    port = argv[argv.index("--port") + 1]
    assert port == "800%i"
    assert argv[1:3] == ["-m", "geoshare.serving"]
    assert environment["GEOSHARE_METRICS_PORT"] == "910%i"
    site = SITE.read_text()
    target = (DOCKER / "systemd" / "geoshare.target").read_text()
    upstream = site.split("upstream geoshare_workers {", 1)[1].split("}", 1)[0]
    servers = re.findall(r"^\s*server 127\.0\.0\.1:(\d+)", upstream, re.MULTILINE)
    wants = re.search(r"^Wants=(.*)$", target, re.MULTILINE).group(1)
    instances = re.findall(r"geoshare@(\d)\.service", wants)
    assert servers == [port.replace("%i", n) for n in instances]
    unit = (DOCKER / "systemd" / "geoshare@.service").read_text()
    assert "KillSignal=SIGTERM" in unit and "User=geoshare" in unit


# -- Prometheus ------------------------------------------------------------------------------------


def exported_names():
    from maps.telemetry import metrics

    names = set()
    for family in metrics.REGISTRY.collect():
        names.update(sample.name for sample in family.samples)
        names.add(family.name)
    return names


def test_alert_rules_and_scrape_targets_match_what_geoshare_exports():
    rules = yaml.safe_load((DOCKER / "prometheus" / "alerts.yml").read_text())
    (group,) = rules["groups"]
    alerts = group["rules"]
    assert len(alerts) == 5
    names = exported_names()
    for alert in alerts:
        assert alert["annotations"]["summary"] and alert["annotations"]["description"]
        for metric in re.findall(r"\bgeoshare_[a-z_]+", alert["expr"]):
            assert metric in names, (alert["alert"], metric)
    scrape = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())
    assert scrape["rule_files"] == ["alerts.yml"]
    (job,) = scrape["scrape_configs"]
    targets = set(job["static_configs"][0]["targets"])
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    workers = [(name, s) for name, s in compose["services"].items()
               if s.get("build") and "command" not in s]
    assert targets == {f"{name}:{s['environment']['GEOSHARE_METRICS_PORT']}"
                       for name, s in workers}

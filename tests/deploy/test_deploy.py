"""deploy/ checked where it can be: ``docker compose config`` where the Docker client
has the compose plugin (skipped with the reason otherwise — there is no Docker engine
on the project's machine), and everywhere the structure itself: the services and
their roles, one beat, one worker pool per queue with a sensible pool, the soft
shutdown inside the grace period, every variable passed to the code existing in the
code, every setting documented, the entrypoint run for real, and the alert rules and
dashboard referring only to metrics that exist."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from prometheus_client import REGISTRY

from erc8004.metrics import _ScrapeTimeCollector
from tests.fixtures.processes import BASE_DIR

DEPLOY = BASE_DIR / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / ".env.example"
APP_SERVICES = (
    "migrate",
    "web",
    "worker-indexing",
    "worker-files",
    "worker-triggers",
    "worker-actions",
    "beat",
    "head-listener",
    "flower",
)

# Variables read by something other than settings.py, and where.
RUNTIME_VARIABLES = {
    "REMAP_SIGTERM": None,  # Celery's own (celery/apps/worker.py)
    "FLOWER_BASIC_AUTH": None,  # Flower's own (every option is a FLOWER_* variable)
    "PROMETHEUS_MULTIPROC_DIR": "erc8004/metrics.py",
    "METRICS_MULTIPROC_ROOT": "erc8004/metrics.py",
    "METRICS_ROOT": "deploy/docker-entrypoint.sh",
    "GUNICORN_BIND": "erc8004/gunicorn_conf.py",
    "GUNICORN_WORKERS": "erc8004/gunicorn_conf.py",
    "GUNICORN_THREADS": "erc8004/gunicorn_conf.py",
    "GUNICORN_TIMEOUT": "erc8004/gunicorn_conf.py",
    "GUNICORN_GRACEFUL_TIMEOUT": "erc8004/gunicorn_conf.py",
    "GUNICORN_KEEPALIVE": "erc8004/gunicorn_conf.py",
    "GUNICORN_MAX_REQUESTS": "erc8004/gunicorn_conf.py",
    "GUNICORN_ACCESSLOG": "erc8004/gunicorn_conf.py",
    "GUNICORN_CONTROL_SOCKET": "erc8004/gunicorn_conf.py",
    "FORWARDED_ALLOW_IPS": "erc8004/gunicorn_conf.py",
}
# Variables of the compose file itself (interpolated, never seen by the code).
COMPOSE_VARIABLES = {"ERC8004_IMAGE", "POSTGRES_PASSWORD", "GRAFANA_ADMIN_PASSWORD", "WEB_PORT", "FLOWER_PORT"}


def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def settings_variables() -> set[str]:
    """Every environment variable erc8004/settings.py reads (env("X"), env.int("X", ...))."""
    text = (BASE_DIR / "erc8004" / "settings.py").read_text()
    return set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z][A-Z0-9_]+)"', text))


def env_example_variables() -> set[str]:
    """Variables .env.example sets or shows commented out (``# NAME=default``)."""
    return set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", ENV_EXAMPLE.read_text(), flags=re.M))


def seconds(value: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", value)
    assert match, value
    return int(match.group(1)) * (60 if match.group(2) == "m" else 1)


def command(service: dict) -> str:
    return " ".join(service["command"]) if isinstance(service["command"], list) else service["command"]


#
# docker compose itself, where it exists
#


def test_docker_compose_config_validates():
    docker = shutil.which("docker")
    if docker is None:
        reason = "no docker client on this machine: `docker compose config` not run"
        print(reason)
        pytest.skip(reason)
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        reason = (
            "the docker client has no compose plugin "
            f"({(probe.stderr or probe.stdout).strip().splitlines()[0][:80]}): `docker compose config` not run; "
            "the compose file's structure is checked by the other tests of this module"
        )
        print(reason)
        pytest.skip(reason)
    argv = [docker, "compose", "-f", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE), "--profile", "monitoring"]
    result = subprocess.run(
        [*argv, "config", "--quiet"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


#
# The structure, everywhere
#


def test_every_process_kind_has_its_service_and_beat_is_unique():
    services = compose()["services"]
    assert set(services) >= {"postgres", "redis", *APP_SERVICES, "prometheus", "grafana"}
    beats = [name for name, svc in services.items() if "command" in svc and " beat" in command(svc)]
    assert beats == ["beat"]
    assert services["beat"]["deploy"]["replicas"] == 1
    assert command(services["head-listener"]) == "python manage.py head_listener"
    assert services["head-listener"]["deploy"]["replicas"] == 1
    for name in APP_SERVICES:
        assert services[name]["image"] == "${ERC8004_IMAGE:-erc8004:latest}"
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["prometheus"]["profiles"] == services["grafana"]["profiles"] == ["monitoring"]


def test_one_worker_pool_per_queue_with_a_sensible_pool():
    services = compose()["services"]
    for queue in settings.WORKER_QUEUES:
        svc = services[f"worker-{queue}"]
        argv = svc["command"]
        assert argv[argv.index("-Q") + 1] == queue
        assert argv[argv.index("-P") + 1] == ("threads" if queue == "actions" else "prefork")
        assert "-E" in argv  # task events for Flower
    assert "gevent" not in COMPOSE_FILE.read_text().replace("Not gevent", "").replace("under gevent", "")


def test_workers_shut_down_softly_inside_their_grace_period():
    services = compose()["services"]
    for name in ("worker-indexing", "worker-files", "worker-triggers", "worker-actions"):
        svc = services[name]
        assert svc["environment"]["REMAP_SIGTERM"] == "SIGQUIT", name
        assert seconds(svc["stop_grace_period"]) > settings.CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT + 5, name
    assert "REMAP_SIGTERM" not in services["beat"]["environment"]  # beat holds no task
    web = services["web"]
    assert "python:erc8004.gunicorn_conf" in command(web)
    import erc8004.gunicorn_conf as gunicorn_conf

    assert seconds(web["stop_grace_period"]) > gunicorn_conf.graceful_timeout


def test_start_up_order_and_infrastructure_settings():
    services = compose()["services"]
    for name in (
        "web",
        "worker-indexing",
        "worker-files",
        "worker-triggers",
        "worker-actions",
        "beat",
        "head-listener",
        "flower",
    ):
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == depends["redis"]["condition"] == "service_healthy", name
        assert depends["migrate"]["condition"] == "service_completed_successfully", name
    assert command(services["migrate"]) == "python manage.py migrate --noinput"
    redis_cmd = command(services["redis"])
    assert "--maxmemory-policy noeviction" in redis_cmd
    assert "--appendonly yes" in redis_cmd
    assert "only=database,broker" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["flower"]["ports"] == ["127.0.0.1:${FLOWER_PORT:-5555}:5555"]
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]
    assert services["web"]["environment"]["METRICS_MULTIPROC_ROOT"] == "/var/lib/erc8004/metrics"


def test_every_variable_passed_to_the_code_exists_in_the_code():
    known = settings_variables()
    for variable, where in RUNTIME_VARIABLES.items():
        if where:
            assert variable in (BASE_DIR / where).read_text(), (variable, where)
    services = compose()["services"]
    for name in APP_SERVICES:
        for variable in services[name].get("environment", {}):
            assert variable in known or variable in RUNTIME_VARIABLES, f"{name}: {variable} is read by nothing"
    interpolated = set(re.findall(r"\$\{([A-Z][A-Z0-9_]+)", COMPOSE_FILE.read_text()))
    assert interpolated <= env_example_variables(), interpolated - env_example_variables()


def test_env_example_and_configuration_doc_cover_every_setting():
    in_settings = settings_variables()
    in_example = env_example_variables()
    assert in_settings - in_example == set(), "settings not in deploy/.env.example"
    unknown = in_example - in_settings - set(RUNTIME_VARIABLES) - COMPOSE_VARIABLES
    assert unknown == set(), "deploy/.env.example sets variables nothing reads"
    doc = (BASE_DIR / "docs" / "configuration.md").read_text()
    undocumented = {v for v in in_settings | in_example | set(RUNTIME_VARIABLES) if f"`{v}`" not in doc}
    assert undocumented == set(), "missing from docs/configuration.md"


def test_dockerfile_is_multi_stage_pinned_non_root_without_dev_dependencies():
    text = (DEPLOY / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, flags=re.M)) >= 2
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-\w+$", text, flags=re.M)
    final_stage = text.rsplit("\nFROM ", 1)[1]
    assert re.search(r"^USER erc8004$", final_stage, flags=re.M)
    assert "requirements/base.txt" in text
    assert "dev.txt" not in text
    assert 'ENTRYPOINT ["docker-entrypoint.sh"]' in text
    assert (DEPLOY / "docker-entrypoint.sh").stat().st_mode & 0o111
    ignored = (BASE_DIR / ".dockerignore").read_text().split()
    assert {".venv", "node_modules", "var", ".env"} <= set(ignored)


def test_entrypoint_gives_each_container_its_own_wiped_metrics_directory(tmp_path: Path):
    stale = tmp_path / socket.gethostname()
    stale.mkdir()
    (stale / "counter_1.db").write_bytes(b"left by the previous container")
    result = subprocess.run(
        [
            "sh",
            str(DEPLOY / "docker-entrypoint.sh"),
            "sh",
            "-c",
            'echo "$PROMETHEUS_MULTIPROC_DIR"; ls -A "$PROMETHEUS_MULTIPROC_DIR"',
        ],
        env={"PATH": "/usr/bin:/bin", "METRICS_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert result.stdout.splitlines() == [str(stale)]  # its own directory, and empty


#
# Monitoring: alerts and dashboard
#


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^a-z0-9 -]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.django_db
def test_alerts_and_dashboard_refer_to_metrics_that_exist(client):
    client.get("/api/v1/health?only=database")  # django-prometheus registers its metrics with its middleware
    families = {family.name for family in REGISTRY.collect()}
    families |= {family.name for family in _ScrapeTimeCollector().collect()}
    samples = set()
    for name in families:
        samples |= {name, f"{name}_total", f"{name}_bucket", f"{name}_count", f"{name}_sum", f"{name}_created"}
    pattern = re.compile(r"\b((?:erc8004|django)_[a-z0-9_]+)")
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    rules = [rule for group in alerts["groups"] for rule in group["rules"]]
    dashboard = (DEPLOY / "grafana" / "erc8004.json").read_text()
    used = set(pattern.findall(" ".join(rule["expr"] for rule in rules))) | set(pattern.findall(dashboard))
    assert used - samples == set(), "no such metric"

    anchors = {
        _slug(line.lstrip("#"))
        for line in (BASE_DIR / "docs" / "runbook.md").read_text().splitlines()
        if line.startswith("#")
    }
    for rule in rules:
        assert rule["labels"]["severity"] in ("info", "warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert anchor in anchors, (rule["alert"], anchor)

    # The seed runbook's thresholds, one alert each.
    by_name = {rule["alert"]: " ".join(rule["expr"].split()) for rule in rules}
    assert by_name["QueueBacklog"].endswith("> 10000")
    assert by_name["ApiLatencyHigh"].endswith("> 0.5")
    assert by_name["ApiErrorRateHigh"].endswith("> 0.05")
    assert by_name["DeliveryFailureRateHigh"].endswith("> 0.10")
    assert by_name["CircuitBreakerOpen"].endswith("== 2")
    assert "erc8004_chain_lag_seconds > 300" in by_name["ChainLagging"]


def test_prometheus_scrapes_the_web_page_and_flower_and_loads_the_rules():
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["erc8004"]["static_configs"][0]["targets"] == ["web:8000"]
    assert jobs["flower"]["static_configs"][0]["targets"] == ["flower:5555"]
    assert config["rule_files"] == ["/etc/prometheus/alerts.yml"]

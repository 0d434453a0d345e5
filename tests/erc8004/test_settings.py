"""The settings the rest of the suite relies on."""

from django.conf import settings


def test_tests_run_on_postgresql_and_redis():
    assert settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
    assert settings.CELERY_BROKER_URL.startswith("redis://")


def test_every_queue_has_a_route():
    queues = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    assert queues == {"indexing", "files", "triggers", "actions"}


def test_beat_entries_expire():
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["options"]["expires"] > 0, name


def _production_settings(**env: str):
    """Import the settings module in a child process with a production environment."""
    import os
    import subprocess
    import sys

    child = {k: v for k, v in os.environ.items() if k not in ("JWT_SECRET", "DJANGO_SECRET_KEY")}
    child.update(
        ERC8004_ENV="production",
        DJANGO_SECRET_KEY="k" * 10 + "production-secret-key-abcdefghijklmnop",
        SECRETS_ENCRYPTION_KEYS="Q1Kq5pYx2QJXyC0m1D8n3s7YQ8b8VY9iLk2cPz0fY3E=",
        DJANGO_DEBUG="false",
        **env,
    )
    return subprocess.run(
        [sys.executable, "-c", "import erc8004.settings"],
        env=child,
        capture_output=True,
        text=True,
        cwd=settings.BASE_DIR,
        check=False,
    )


def test_production_refuses_a_missing_or_weak_jwt_secret():
    import pytest

    strong = "Zq3vN8rT1xLw5pYc0bHk7mJd2sFg9aUe4QiRo6Vt"
    assert _production_settings(JWT_SECRET=strong).returncode == 0
    for weak in ("", "short-secret", "your-256-bit-secret", "a" * 40, "changeme" * 5):
        result = _production_settings(JWT_SECRET=weak)
        if result.returncode == 0:
            pytest.fail(f"accepted weak JWT_SECRET {weak!r}")
        assert "JWT_SECRET" in result.stderr
    same = _production_settings(JWT_SECRET="k" * 10 + "production-secret-key-abcdefghijklmnop")
    assert same.returncode != 0  # the JWT key must not be the Django secret key

"""``manage.py healthcheck``: the seed runbook's ``scripts/health-check.sh``, for
scripts and for people.

Runs every registered check in deep mode (erc8004/health.py: database and schema,
broker and its eviction policy, queue depths, worker heartbeats, each chain's lag,
evaluation and delivery backlogs, breakers) and, with ``--url``, also asks the web
server's ``/api/v1/health`` and times it (the runbook wants < 0.5 s).

Exit status: 0 healthy (warnings allowed), 1 something fails, 2 only warnings and
``--strict`` was given. ``--json`` prints the report as JSON (same shape as the
endpoint, plus the web probe).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from django.core.management.base import BaseCommand

from erc8004.health import FAIL, OK, WARN, CheckResult, health_run

_MARK = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL"}
# The runbook's response-time budget for the health endpoint.
WEB_SLOW_SECONDS = 0.5


def _probe(url: str, timeout: float) -> CheckResult:
    """The web server answers its health endpoint, in time."""
    target = url.rstrip("/") + "/api/v1/health"
    started = time.monotonic()
    try:
        with urllib.request.urlopen(target, timeout=timeout) as response:  # noqa: S310 - the operator's URL
            status, body = response.status, response.read()
    except urllib.error.HTTPError as exc:  # 503 carries the report
        status, body = exc.code, exc.read()
    except OSError as exc:
        return CheckResult("web", FAIL, f"{target}: {exc}")
    elapsed = time.monotonic() - started
    data: dict[str, Any] = {"url": target, "status": status, "seconds": round(elapsed, 3)}
    try:
        data["failing"] = json.loads(body).get("failing", [])
    except ValueError:
        return CheckResult("web", FAIL, f"{target} answered {status} without a health report", data)
    if status not in (200, 503):
        return CheckResult("web", FAIL, f"{target} answered {status}", data)
    if elapsed > WEB_SLOW_SECONDS:
        return CheckResult("web", WARN, f"answered {status} in {elapsed:.2f}s (> {WEB_SLOW_SECONDS}s)", data)
    return CheckResult("web", OK, f"answered {status} in {elapsed * 1000:.0f} ms", data)


class Command(BaseCommand):
    help = "Check the whole deployment (database, broker, workers, chains, backlogs); exit 1 if anything fails."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the report as JSON")
        parser.add_argument("--url", default="", help="Also probe this web server (e.g. http://127.0.0.1:8000)")
        parser.add_argument("--only", default="", help="Comma-separated check groups (database,broker,workers,...)")
        parser.add_argument("--quick", action="store_true", help="Skip the deep checks (migrations, Redis memory)")
        parser.add_argument("--strict", action="store_true", help="Exit 2 when there are warnings")
        parser.add_argument("--timeout", type=float, default=5.0, help="Seconds for the --url probe")

    def handle(self, *args, **opts) -> None:
        only = [g for g in opts["only"].split(",") if g] or None
        report = health_run(deep=not opts["quick"], only=only)
        if opts["url"]:
            report.results.append(_probe(opts["url"], opts["timeout"]))
        if opts["json"]:
            self.stdout.write(json.dumps(report.to_dict(), indent=2, default=str))
        else:
            width = max((len(r.name) for r in report.results), default=10)
            for result in report.results:
                line = f"{_MARK[result.status]}  {result.name:<{width}}  {result.detail}"
                style = {OK: self.style.SUCCESS, WARN: self.style.WARNING, FAIL: self.style.ERROR}[result.status]
                self.stdout.write(style(line))
            self.stdout.write(
                f"\n{report.status}" + (f": failing {', '.join(report.failing)}" if report.failing else "")
            )
        if report.failing:
            raise SystemExit(1)
        if opts["strict"] and report.warnings:
            raise SystemExit(2)

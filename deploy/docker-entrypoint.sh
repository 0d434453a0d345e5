#!/bin/sh
# Every container of the image starts here (deploy/Dockerfile).
#
# Prometheus multiprocess mode: each process writes its counters to files named
# after its pid, and pids repeat across containers, so every container gets its own
# directory under the shared METRICS_ROOT volume, wiped at start (a restarted
# container's counters restart at zero, as Prometheus expects). The web service
# reads them all (METRICS_MULTIPROC_ROOT=$METRICS_ROOT; erc8004/metrics.py).
set -eu
if [ -n "${METRICS_ROOT:-}" ] && [ -z "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  PROMETHEUS_MULTIPROC_DIR="$METRICS_ROOT/${HOSTNAME:-$(hostname)}"
  export PROMETHEUS_MULTIPROC_DIR
fi
if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
  rm -rf "$PROMETHEUS_MULTIPROC_DIR"
  mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
fi
exec "$@"

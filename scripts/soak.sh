#!/usr/bin/env bash
# scripts/soak.sh is `make soak`: one api node on a private Redis, under `sgbench soak` for
# SOAK_DURATION (default 10m): users connecting and leaving in a loop, resumes, sessions-API
# changes and steady publishes. It prints the api's goroutines, heap, RSS and descriptors and
# Redis's keys before the load and after every user has left: a leak shows as growth.
#
# Environment:
#   SOAK_DURATION=10m    how long the load runs
#   SOAK_USERS=200       users, each with its own token
#   SOAK_RATE=50         events published per second
#   SOAK_SETTLE=65s      wait after the load before the last sample
#   SOAK_OUT=dir         keep the JSON result and the logs there (default: a temporary dir)
#   GO=go                the go command
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
die() { echo "soak: $*" >&2; exit 1; }
command -v redis-server >/dev/null || die "needs redis-server on the PATH (apt-get install redis-server)"

echo "== building bin/api and bin/sgbench"
CGO_ENABLED=0 "$GO" build -trimpath -o bin/api ./cmd/api
CGO_ENABLED=0 "$GO" build -trimpath -o bin/sgbench ./cmd/sgbench

# shellcheck source=scripts/servers.sh
. scripts/servers.sh
use_workdir "${SOAK_OUT:-}" sgsoak
start_redis
start_apis 1

echo "== soak on $(nproc) cores, $(redis-server --version | awk '{print $3}'), logs in $WORK"
rc=0
bin/sgbench soak -url "${API_URLS[0]}" -redis "127.0.0.1:$REDIS_PORT" \
	-duration "${SOAK_DURATION:-10m}" -users "${SOAK_USERS:-200}" -rate "${SOAK_RATE:-50}" \
	-settle "${SOAK_SETTLE:-65s}" -out "$WORK/soak.json" || rc=$?
if ((rc != 0)); then
	tail -n 20 "$WORK"/api-*.log >&2 || true
	exit "$rc"
fi

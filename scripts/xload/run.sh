#!/usr/bin/env bash
# scripts/xload/run.sh runs make bench's load scenarios with scripts/xload/xload.mjs, a Node.js
# load client written apart from cmd/sgbench, to check sgbench's figures: for each scenario a
# fresh api node (bin/api) on a private Redis, both on this machine's loopback, then a result
# table. It stops everything it started, however it exits, and exits non-zero when a scenario
# fails. See scripts/xload/README.md.
#
# Usage: scripts/xload/run.sh [SCENARIO…]     (A, B' or C; default: $XLOAD_SCENARIOS)
#
# Environment:
#   XLOAD_SCENARIOS="A B' C"  the scenarios to run when none is named
#   XLOAD_SCALE=1        scale the stream counts, C's rate and B''s events as BENCH_SCALE does
#                        (0.05 for a quick try)
#   XLOAD_CONNS=10000    the 10,000 of A and C (B' takes a quarter), before scaling
#   XLOAD_PROCS=0        worker processes holding the streams (0: one per 5,000, at least 2)
#   XLOAD_OUT=dir        keep the JSON results and server logs there (default: a temporary dir)
#   NODE=node            the node command (Node 18 or later)
#   GO=go                the go command
set -euo pipefail
cd "$(dirname "$0")/../.."

GO=${GO:-go}
NODE=${NODE:-node}
XLOAD_SCALE=${XLOAD_SCALE:-1}
XLOAD_CONNS=${XLOAD_CONNS:-10000}
XLOAD_PROCS=${XLOAD_PROCS:-0}
XLOAD_SCENARIOS=${XLOAD_SCENARIOS:-"A B' C"}
SCENARIOS=("$@")
((${#SCENARIOS[@]} > 0)) || read -r -a SCENARIOS <<<"$XLOAD_SCENARIOS"

die() { echo "xload: $*" >&2; exit 1; }
# scale N MIN: N × XLOAD_SCALE, rounded, at least MIN.
scale() { awk -v n="$1" -v s="$XLOAD_SCALE" -v m="$2" 'BEGIN { v = int(n * s + 0.5); print (v < m ? m : v) }'; }

awk -v s="$XLOAD_SCALE" 'BEGIN { exit !(s > 0 && s <= 10) }' || die "XLOAD_SCALE must be above 0 and at most 10"
[[ $XLOAD_CONNS =~ ^[0-9]+$ ]] || die "XLOAD_CONNS must be a number"
[[ $XLOAD_PROCS =~ ^[0-9]+$ ]] || die "XLOAD_PROCS must be a number"
for s in "${SCENARIOS[@]}"; do
	case $s in A | "B'" | Bp | C) ;; *) die "unknown scenario $s (A, B', C)" ;; esac
done
command -v "$NODE" >/dev/null || die "needs node (18 or later) on the PATH, or NODE=…"
command -v redis-server >/dev/null || die "needs redis-server on the PATH (apt-get install redis-server)"

echo "== building bin/api"
CGO_ENABLED=0 "$GO" build -trimpath -o bin/api ./cmd/api

# One socket per stream, on both ends: lift the descriptor limit as far as this shell may. The
# node processes inherit it.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# shellcheck source=scripts/servers.sh
. scripts/servers.sh
use_workdir "${XLOAD_OUT:-}" xload
start_redis

CONNS=$(scale "$XLOAD_CONNS" 10)
BP_CONNS=$(scale $((XLOAD_CONNS / 4)) 10)
BP_EVENTS=$(scale 200 20)
C_RATE=$(scale 2000 20)
PROCS=()
((XLOAD_PROCS == 0)) || PROCS=(--procs "$XLOAD_PROCS")

FAILED=()
echo "== scenarios on $(nproc) cores, ulimit -n $(ulimit -n), $("$NODE" --version), $(redis-server --version | awk '{print $3}'), results in $WORK"
for s in "${SCENARIOS[@]}"; do
	case $s in
	A) args=(--conns "$CONNS" --ramp 5000 --settle 10 --after-leave 60) ;;
	"B'" | Bp)
		s="B'"
		args=(--conns "$BP_CONNS" --ramp 2000 --events "$BP_EVENTS" --rate 10)
		;;
	C) args=(--conns "$CONNS" --ramp 2000 --events $((C_RATE * 10)) --rate "$C_RATE") ;;
	esac
	echo
	echo "== scenario $s"
	start_apis 1
	rc=0
	"$NODE" scripts/xload/xload.mjs --scenario "$s" --url "${API_URLS[0]}" --api-pid "${API_PIDS[0]}" \
		--redis-pid "$REDIS_PID" --json "$WORK/xload-${s//[^A-Za-z0-9]/p}.json" "${PROCS[@]}" "${args[@]}" || rc=$?
	if ((rc == 130)); then
		exit 130 # interrupted: the trap stops the servers
	elif ((rc != 0)); then
		FAILED+=("$s")
		echo "xload: scenario $s failed; the api log is in $WORK (XLOAD_OUT keeps it)" >&2
		tail -n 5 "$WORK"/api-*.log >&2 || true
	fi
	stop_apis
done

((${#FAILED[@]} == 0)) || die "failed: ${FAILED[*]}"

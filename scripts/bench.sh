#!/usr/bin/env bash
# scripts/bench.sh is `make bench`: the Go benchmarks, then Streamgate's standard load scenarios
# measured with cmd/sgbench against freshly started api nodes on a private Redis, all on this
# machine's loopback interface. It prints a table per scenario and a summary at the end, and
# stops everything it started, however it exits.
#
# Scenarios (BENCH_SCENARIOS, default "A B B' C D"):
#   A   10,000 idle SSE sessions connecting at 5,000/s: api RSS per connection 10 s after the
#       last connect (the whole process), time to establish them all, and the api RSS 60 s after
#       every session left
#   B   10,000 subscribers of one channel, 100 events at 10/s: api CPU per delivery, nothing lost
#   B'  2,500 subscribers of one channel, 200 events at 10/s: latency p99
#   C   10,000 subscribers each on its own channel, 2,000 publishes/s for 10 s: p99, api CPU per
#       publish, Redis CPU
#   D   B and C again with 3 api nodes on the one Redis, sessions spread evenly, each node given
#       its share of the cores (GOMAXPROCS = cores / nodes, at least 1), as docs/operations.md
#       advises for nodes that share a machine: three Go runtimes that each believe they have
#       every core spend the difference scheduling (BENCH_SHARE=0 runs them so, to compare)
#
# Environment:
#   BENCH_SCALE=0.1      scale the session counts (and C's rate, B's and B''s event counts) for a quick try
#   BENCH_CONNS=10000    the 10,000 of A, B, C and D (B' takes a quarter), before scaling
#   BENCH_RAMP=2000      connections per second (all but A)
# Every session has a token of its own, signed with its tenant's signing key (sgbench -tokens
# per-user), as a tenant's backend gives each user.
#   BENCH_PROCS=0        sgbench worker processes (0: sgbench decides)
#   BENCH_GO=1           0 skips the Go benchmarks
#   BENCH_SHARE=1        0: D's nodes each see every core (GOMAXPROCS unset)
#   BENCH_OUT=dir        keep the JSON results and server logs there (default: a temporary dir)
#   GO=go                the go command
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
BENCH_GO=${BENCH_GO:-1}
BENCH_SCALE=${BENCH_SCALE:-1}
BENCH_CONNS=${BENCH_CONNS:-10000}
BENCH_RAMP=${BENCH_RAMP:-2000}
BENCH_PROCS=${BENCH_PROCS:-0}
BENCH_SCENARIOS=${BENCH_SCENARIOS:-"A B B' C D"}
BENCH_SHARE=${BENCH_SHARE:-1}

die() { echo "bench: $*" >&2; exit 1; }
# scale N MIN: N × BENCH_SCALE, rounded, at least MIN.
scale() { awk -v n="$1" -v s="$BENCH_SCALE" -v m="$2" 'BEGIN { v = int(n * s + 0.5); print (v < m ? m : v) }'; }

awk -v s="$BENCH_SCALE" 'BEGIN { exit !(s > 0 && s <= 10) }' || die "BENCH_SCALE must be above 0 and at most 10"
[[ $BENCH_CONNS =~ ^[0-9]+$ ]] || die "BENCH_CONNS must be a number"
for s in $BENCH_SCENARIOS; do
	case $s in A | B | "B'" | Bp | C | D) ;; *) die "unknown scenario $s (A, B, B', C, D)" ;; esac
done

if [[ $BENCH_GO != 0 ]]; then
	echo "== Go benchmarks"
	"$GO" test -run '^$' -bench . -benchmem ./...
fi

[[ -z ${BENCH_SCENARIOS// /} ]] && exit 0
command -v redis-server >/dev/null || die "the scenarios need redis-server on the PATH (apt-get install redis-server); BENCH_SCENARIOS= skips them"

echo "== building bin/api and bin/sgbench"
CGO_ENABLED=0 "$GO" build -trimpath -o bin/api ./cmd/api
CGO_ENABLED=0 "$GO" build -trimpath -o bin/sgbench ./cmd/sgbench

# One socket per session, on both ends: lift the descriptor limit as far as this shell may.
ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
CONNS=$(scale "$BENCH_CONNS" 10)
if (($(ulimit -n) < CONNS + 1000)); then
	echo "bench: warning: ulimit -n is $(ulimit -n), below the $CONNS sessions one api node must hold" >&2
fi

# shellcheck source=scripts/servers.sh
. scripts/servers.sh
use_workdir "${BENCH_OUT:-}" sgbench
start_redis

# bench NAME NODES ARGS… runs sgbench against NODES fresh api nodes.
RESULTS=()
FAILED=()
RUNS=0
bench() {
	local name=$1 nodes=$2 file
	shift 2
	RUNS=$((RUNS + 1))
	file="$WORK/$(printf '%02d' "$RUNS")-${name//[^A-Za-z0-9]/_}.json"
	echo
	echo "== scenario $name"
	local procs=
	if ((nodes > 1)) && [[ $BENCH_SHARE != 0 ]]; then
		procs=$(($(nproc) / nodes))
		((procs >= 1)) || procs=1
	fi
	start_apis "$nodes" "$procs"
	[[ -z $procs ]] || echo "$nodes api nodes with GOMAXPROCS=$procs each, their share of $(nproc) cores"
	local urls pids
	urls=$(IFS=,; echo "${API_URLS[*]}")
	pids=$(IFS=,; echo "${API_PIDS[*]}")
	local rc=0
	bin/sgbench -url "$urls" -pids "$pids" -redis-pid "$REDIS_PID" -wait-ready 20s -signup \
		-ramp "$BENCH_RAMP" -procs "$BENCH_PROCS" -duration 5m -scenario "$name" -out "$file" "$@" || rc=$?
	if ((rc == 130)); then
		exit 130 # interrupted: sgbench printed what it had; the trap stops the servers
	elif ((rc == 0)); then
		RESULTS+=("$file")
	else
		FAILED+=("$name")
		echo "bench: scenario $name failed; the api logs are in $WORK (BENCH_OUT keeps them)" >&2
		tail -n 5 "$WORK"/api-*.log >&2 || true
	fi
	stop_apis
}

B_EVENTS=$(scale 100 20)
BP_EVENTS=$(scale 200 20)
BP_CONNS=$(scale $((BENCH_CONNS / 4)) 10)
C_RATE=$(scale 2000 20)
C_EVENTS=$((C_RATE * 10))

echo "== scenarios on $(nproc) cores, ulimit -n $(ulimit -n), $(redis-server --version | awk '{print $3}'), results in $WORK"
for s in $BENCH_SCENARIOS; do
	case $s in
	A) bench A 1 -conns "$CONNS" -ramp 5000 -settle 10s -after-leave 60s ;;
	B) bench B 1 -conns "$CONNS" -events "$B_EVENTS" -rate 10 ;;
	"B'" | Bp) bench "B'" 1 -conns "$BP_CONNS" -events "$BP_EVENTS" -rate 10 ;;
	C) bench C 1 -conns "$CONNS" -channels per-conn -events "$C_EVENTS" -rate "$C_RATE" ;;
	D)
		bench "D/B" 3 -conns "$CONNS" -events "$B_EVENTS" -rate 10
		bench "D/C" 3 -conns "$CONNS" -channels per-conn -events "$C_EVENTS" -rate "$C_RATE"
		;;
	esac
done

if ((${#RESULTS[@]} > 0)); then
	echo
	echo "== summary"
	bin/sgbench summary "${RESULTS[@]}"
fi
if ((${#FAILED[@]} > 0)); then
	die "failed: ${FAILED[*]}"
fi

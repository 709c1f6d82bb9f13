# scripts/servers.sh is sourced by bench.sh, soak.sh and xload/run.sh: a private redis-server and
# api nodes on loopback ports, stopped however the script exits. The sourcing script defines
# die() and calls use_workdir, then start_redis once, then start_apis N as often as it likes.

# use_workdir KEEP PREFIX sets WORK, the directory for logs and results: KEEP when it is set
# (kept afterwards), else a new temporary directory named after PREFIX (removed on exit). Every
# server started is stopped however the script exits; an interrupt exits with 130.
use_workdir() {
	KEEP_WORK=$1
	if [[ -n $KEEP_WORK ]]; then
		WORK=$KEEP_WORK
		mkdir -p "$WORK"
	else
		WORK=$(mktemp -d "${TMPDIR:-/tmp}/$2.XXXXXX")
	fi
	trap cleanup_servers EXIT
	trap 'exit 130' INT TERM
}

cleanup_servers() {
	stop_servers
	[[ -n $KEEP_WORK ]] || rm -rf "$WORK"
}

API_PIDS=()
API_URLS=()
REDIS_PID=
REDIS_PORT=

stop_apis() {
	local p
	for p in "${API_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${API_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	API_PIDS=()
	API_URLS=()
}

stop_servers() {
	stop_apis
	if [[ -n $REDIS_PID ]]; then
		kill -TERM "$REDIS_PID" 2>/dev/null || true
		wait "$REDIS_PID" 2>/dev/null || true
	fi
}

# free_port prints a loopback port nothing listens on, below the ephemeral range so that the
# load's own outgoing connections never take it.
free_port() {
	local p
	for _ in $(seq 200); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	echo "no free loopback port found" >&2
	exit 1
}

# start_redis starts a redis-server that keeps nothing on disk, on a free port.
start_redis() {
	REDIS_PORT=$(free_port) || die "no free loopback port for redis"
	mkdir -p "$WORK/redis"
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$WORK/redis" --save "" --appendonly no \
		--maxclients 20000 --logfile "$WORK/redis/redis.log" --daemonize no &
	REDIS_PID=$!
	for _ in $(seq 50); do
		redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
		sleep 0.1
	done
	redis-cli -p "$REDIS_PORT" ping >/dev/null || die "redis-server did not start (see $WORK/redis/redis.log)"
	SECRET_KEY=$(head -c 32 /dev/urandom | base64)
	ADMIN_TOKEN=sga_$(head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
}

# start_apis N [PROCS] starts N api nodes (bin/api) on an emptied Redis, with tenant limits
# raised for load: max_connections, publishes and the per-address rates would otherwise be what
# is measured. PROCS, when given, is each node's GOMAXPROCS: its share of the machine's cores.
start_apis() {
	local i port procs=${2:-}
	redis-cli -p "$REDIS_PORT" flushall >/dev/null
	for i in $(seq "$1"); do
		port=$(free_port) || die "no free loopback port for an api node"
		REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
			STREAMGATE_ADDR="127.0.0.1:$port" \
			STREAMGATE_SECRET_KEY="$SECRET_KEY" \
			STREAMGATE_ADMIN_TOKEN="$ADMIN_TOKEN" \
			STREAMGATE_NODE_ID="bench-$i" \
			STREAMGATE_DEFAULT_MAX_CONNECTIONS=100000 \
			STREAMGATE_DEFAULT_PUBLISH_PER_SECOND=1000000 \
			STREAMGATE_RATE_STREAM_IP=100000000-M STREAMGATE_RATE_STREAM_TENANT=100000000-M \
			STREAMGATE_RATE_SIGNUP=100000-M STREAMGATE_RATE_TOKENS=100000000-M \
			STREAMGATE_DEFAULT_MAX_SUBSCRIPTIONS_PER_SESSION=100 \
			STREAMGATE_SHUTDOWN_TIMEOUT=3s \
			STREAMGATE_LOG_LEVEL=warn \
			${procs:+env GOMAXPROCS=$procs} bin/api >>"$WORK/api-$i.log" 2>&1 &
		API_PIDS+=($!)
		API_URLS+=("http://127.0.0.1:$port")
	done
}

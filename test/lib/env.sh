# Shared set-up for the demo, the tests and the benchmarks: Debian packages,
# build and install, a throwaway Postgres cluster and the Stripe emulator.
# Source it, then call the functions you need; sp_teardown runs on exit.

SP_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SP_PG_VERSION=${SP_PG_VERSION:-15}
# what building, installing and the extension's suites need
SP_DEBIAN_PACKAGES="postgresql-$SP_PG_VERSION postgresql-server-dev-$SP_PG_VERSION
	build-essential pkg-config libcurl4-openssl-dev libssl-dev
	libmicrohttpd-dev libpq-dev python3 ca-certificates procps"
# what the checks beside them need: sanitizers, fuzzing, analysis, load
SP_CHECK_PACKAGES="valgrind clang libclang-rt-dev clang-tidy cppcheck wrk libjson-c-dev"

sp_log() { printf '==> %s\n' "$*" >&2; }
sp_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Installs what is missing, and nothing when all is there.
sp_install_deps() {
	local missing=() p
	for p in $SP_DEBIAN_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	if [ "$(id -u)" -ne 0 ]; then
		sp_die "missing Debian packages: ${missing[*]} (install them as root, or run this as root)"
	fi
	sp_log "installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >/dev/null
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The Postgres that PG_CONFIG names, if set; else Debian's packaged one.
sp_pg_bindir() {
	if [ -n "${PG_CONFIG:-}" ] && [ -x "$PG_CONFIG" ]; then
		"$PG_CONFIG" --bindir
		return
	fi
	local d="/usr/lib/postgresql/$SP_PG_VERSION/bin"
	[ -x "$d/initdb" ] || d=$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/initdb)")
	echo "$d"
}

# A failed build stops everything: the tests must never run the library
# that an earlier build installed.
sp_build_install() {
	local log
	export PG_CONFIG=${PG_CONFIG:-$(sp_pg_bindir)/pg_config}
	[ -x "$PG_CONFIG" ] || PG_CONFIG=pg_config
	log=$(mktemp "${TMPDIR:-/tmp}/stripepay-build.XXXXXX")
	sp_log "building stripepay"
	if ! make -C "$SP_ROOT" -s PG_CONFIG="$PG_CONFIG" >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		sp_die "the build failed"
	fi
	sp_log "installing stripepay"
	if ! make -C "$SP_ROOT" -s PG_CONFIG="$PG_CONFIG" install >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		sp_die "the installation failed"
	fi
	rm -f "$log"
}

# Runs a command as the cluster's owner: Postgres will not run as root.
sp_as_owner() {
	if [ "$(id -u)" -eq 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

sp_free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

SP_TMP=${SP_TMP:-}
SP_EMULATOR_PID=""
sp_teardown() {
	local rc=$?
	if [ -n "$SP_TMP" ] && [ -f "$SP_TMP/data/postmaster.pid" ]; then
		sp_as_owner "$(sp_pg_bindir)/pg_ctl" -D "$SP_TMP/data" -m immediate -w stop >/dev/null 2>&1 || true
	fi
	if [ -n "$SP_EMULATOR_PID" ]; then
		kill "$SP_EMULATOR_PID" 2>/dev/null || true
		wait "$SP_EMULATOR_PID" 2>/dev/null || true
	fi
	if [ -n "$SP_TMP" ] && [ -z "${SP_KEEP_TMP:-}" ]; then
		rm -rf "$SP_TMP"
	fi
	return $rc
}

sp_make_tmp() {
	SP_TMP=$(mktemp -d "${TMPDIR:-/tmp}/stripepay.XXXXXX")
	chmod 755 "$SP_TMP"
	[ "$(id -u)" -eq 0 ] && chown postgres: "$SP_TMP"
	trap sp_teardown EXIT
	trap 'exit 130' INT TERM
}

# Starts the emulator on a free port; sets SP_EMULATOR_URL.
sp_emulator_start() {
	local log="$SP_TMP/emulator.out" i
	python3 "$SP_ROOT/test/emulator/stripe_emulator.py" --port 0 --log "$SP_TMP/emulator.log" >"$log" 2>&1 &
	SP_EMULATOR_PID=$!
	for i in $(seq 1 100); do
		if grep -q 'listening on' "$log" 2>/dev/null; then
			SP_EMULATOR_URL="http://$(sed -n 's/.*listening on \([0-9.:]*\).*/\1/p' "$log" | head -1)"
			export SP_EMULATOR_URL
			return 0
		fi
		kill -0 "$SP_EMULATOR_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$log" >&2
	sp_die "the Stripe emulator did not start"
}

# Starts a throwaway cluster listening on a unix socket in SP_TMP only.
# Sets PGHOST, PGPORT, PGUSER, PGDATABASE for everything that follows.
sp_cluster_start() {
	local bindir api_base=${1:-$SP_EMULATOR_URL}
	bindir=$(sp_pg_bindir)
	PGPORT=$(sp_free_port)
	sp_log "starting a throwaway cluster on port $PGPORT"
	sp_as_owner "$bindir/initdb" -D "$SP_TMP/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 -N >"$SP_TMP/initdb.log" 2>&1 ||
		{ cat "$SP_TMP/initdb.log" >&2; sp_die "initdb failed"; }
	cat >>"$SP_TMP/data/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = ''
unix_socket_directories = '$SP_TMP'
max_connections = 100
fsync = off
log_line_prefix = '%m [%p] %u@%d '
log_min_messages = info
CONF
	if [ -n "$api_base" ]; then
		echo "stripepay.api_base = '$api_base'" >>"$SP_TMP/data/postgresql.conf"
	fi
	sp_as_owner "$bindir/pg_ctl" -D "$SP_TMP/data" -l "$SP_TMP/server.log" -w start >/dev/null ||
		{ cat "$SP_TMP/server.log" >&2; sp_die "the cluster did not start"; }
	export PGHOST="$SP_TMP" PGPORT PGUSER=postgres PGDATABASE=postgres
	export SP_SERVER_LOG="$SP_TMP/server.log" SP_TMP
	export PATH="$bindir:$PATH"
}

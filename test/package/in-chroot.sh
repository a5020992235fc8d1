#!/bin/bash
# The install test, run by test/package/run.sh inside a throwaway copy of
# the clean chroot (as root): installs the packages in /tmp/spk/debs with apt,
# then checks the extension in a throwaway cluster, the relay against it,
# the systemd unit, and removal.  Prints "ok - ..." / "not ok - ..." /
# "ok - ... # SKIP ..." lines on stdout, diagnostics on stderr.
#
# Usage: in-chroot.sh <extension version> <pg-major>
set -u
VERSION=${1:?extension version}
MAJOR=${2:?PostgreSQL major}
DEBS=/tmp/spk/debs
PGBIN=/usr/lib/postgresql/$MAJOR/bin
EXT=stripepay

ok() { echo "ok - $*"; }
notok() { echo "not ok - $*"; }
skip() { echo "ok - $1 # SKIP $2"; }
check() { # check <description> <command...>
	local what=$1
	shift
	if "$@" >&2; then ok "$what"; else notok "$what"; fi
}
diag() { printf '# %s\n' "$*" >&2; }

PGDIR=
PGPORT=
RELAY_PID=
cleanup() {
	if [ -n "$RELAY_PID" ]; then
		kill -KILL "$RELAY_PID" 2>/dev/null
		wait "$RELAY_PID" 2>/dev/null
	fi
	if [ -n "$PGDIR" ] && [ -f "$PGDIR/data/postmaster.pid" ]; then
		runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m immediate -w stop >/dev/null 2>&1
	fi
	[ -z "$PGDIR" ] || rm -rf "$PGDIR"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A TCP port nothing listens on, from a range clear of the usual services.
free_port() {
	local p _
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# http_status <port> <path>: the status line of a GET, or nothing.
http_status() {
	local line
	exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
	printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
	IFS= read -r -t 10 line <&3
	exec 3<&- 3>&-
	printf '%s\n' "${line%$'\r'}"
}

psql_() { runuser -u postgres -- "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGDIR" -p "$PGPORT" "$@"; }

# --- install ---
debs=()
for f in "$DEBS"/*.deb; do
	case "$f" in *-dbgsym_* | *'*'*) ;; *) debs+=("$f") ;; esac
done
if [ "${#debs[@]}" -eq 0 ]; then
	notok "install: no .deb in $DEBS"
	exit 1
fi
diag "installing: ${debs[*]##*/}"
install_debs() { apt-get install -y "${debs[@]}"; }
if ! install_debs >&2; then
	diag "apt-get install failed; updating the lists and trying again"
	apt-get update >&2 && install_debs >&2
fi
rc=$?
if [ "$rc" -ne 0 ]; then
	notok "install: apt-get install of ${debs[*]##*/} (and their dependencies from the mirror)"
	exit 1
fi
ok "install: apt-get install of ${debs[*]##*/} (and their dependencies from the mirror)"
for p in "postgresql-$MAJOR-$EXT" stripepay-relay; do
	check "install: $p is installed, version $(dpkg-query -W -f '${Version}' "$p" 2>/dev/null)" \
		sh -c "dpkg-query -W -f '\${db:Status-Status}' $p | grep -qx installed"
done

# --- the extension in a throwaway cluster ---
PGDIR=$(mktemp -d /tmp/spk-pg.XXXXXX)
chown postgres:postgres "$PGDIR"
chmod 0755 "$PGDIR" # the relay's user reaches the socket here
PGPORT=$(free_port) || { notok "cluster: no free port"; exit 1; }
if runuser -u postgres -- "$PGBIN/initdb" -D "$PGDIR/data" -A trust -U postgres --no-sync >&2 &&
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
		-o "-k $PGDIR -p $PGPORT -c listen_addresses=''" start >&2; then
	ok "cluster: initdb and start as postgres (socket $PGDIR, port $PGPORT)"
else
	notok "cluster: initdb and start as postgres"
	cat "$PGDIR/server.log" >&2 2>/dev/null
	exit 1
fi

check "CREATE EXTENSION $EXT" psql_ -d postgres -c "CREATE EXTENSION $EXT"
dx=$(psql_ -d postgres -c "\\dx $EXT" 2>&1)
printf '%s\n' "$dx" >&2
if printf '%s\n' "$dx" | grep -Eq "^ *$EXT +\| +$VERSION +\|"; then
	ok "\\dx shows $EXT $VERSION"
else
	notok "\\dx shows $EXT $VERSION"
fi

# each upgrade script packaged: ALTER EXTENSION ... UPDATE from its start
upgrades=$(find "/usr/share/postgresql/$MAJOR/extension/" -maxdepth 1 -name "$EXT--*--$VERSION.sql" -printf '%f\n' |
	sed -n "s/^$EXT--\([^-]*\)--$VERSION\.sql$/\1/p" | sort -V)
if [ -z "$upgrades" ]; then
	skip "ALTER EXTENSION $EXT UPDATE to $VERSION" "no upgrade script to $VERSION packaged"
fi
upgrade_from() { # a database of its own, CREATE at <from>, then UPDATE
	local from=$1 db="upgrade_${1//./_}"
	psql_ -d postgres -c "CREATE DATABASE $db" &&
		psql_ -d "$db" -c "CREATE EXTENSION $EXT VERSION '$from'" -c "ALTER EXTENSION $EXT UPDATE" &&
		[ "$(psql_ -d "$db" -At -c "SELECT extversion FROM pg_extension WHERE extname = '$EXT'")" = "$VERSION" ]
}
for from in $upgrades; do
	check "ALTER EXTENSION $EXT UPDATE from $from to $VERSION" upgrade_from "$from"
done

# --- the relay ---
relay=$(dpkg -L stripepay-relay | grep -E '/bin/stripepay-relay$' | head -n 1)
if [ -n "$relay" ] && [ -x "$relay" ]; then
	ok "relay: stripepay-relay installed at $relay"
else
	notok "relay: stripepay-relay binary in the package"
fi
out=$(stripepay-relay --version 2>&1)
diag "stripepay-relay --version: $out"
if [ "$out" = "stripepay-relay $VERSION" ]; then
	ok "relay: stripepay-relay --version says $VERSION"
else
	notok "relay: stripepay-relay --version says $VERSION (got: $out)"
fi

if getent passwd stripepay_relay >/dev/null; then
	ok "relay: the package made the system user stripepay_relay"
	# the role of the unit's comments, for the unit's user over the socket
	psql_ -d postgres -c "CREATE ROLE stripepay_relay LOGIN IN ROLE stripepay_webhook" >&2
	relay_user=stripepay_relay
else
	notok "relay: the package made the system user stripepay_relay"
	relay_user=postgres
fi
RPORT=$(free_port) || RPORT=28787
# setpriv execs the relay itself (runuser would stand between it and the
# signal, and answer SIGTERM with its own status)
STRIPEPAY_RELAY_DSN="host=$PGDIR port=$PGPORT dbname=postgres user=$relay_user" \
	setpriv --reuid="$relay_user" --regid="$relay_user" --init-groups \
	"$relay" --listen "127.0.0.1:$RPORT" --pool 1 2>"$PGDIR/relay.log" &
RELAY_PID=$!
status=
for _ in $(seq 100); do
	if (exec 3<>"/dev/tcp/127.0.0.1/$RPORT") 2>/dev/null; then
		status=$(http_status "$RPORT" /healthz)
		break
	fi
	kill -0 "$RELAY_PID" 2>/dev/null || break
	sleep 0.1
done
diag "GET /healthz: ${status:-no answer}"
case "$status" in
"HTTP/1."?" 200"*) ok "relay: GET /healthz answers 200 (as $relay_user, DSN to the unix socket)" ;;
*) notok "relay: GET /healthz answers 200 (got: ${status:-no answer})" ;;
esac
if kill -TERM "$RELAY_PID" 2>/dev/null; then
	for _ in $(seq 100); do
		kill -0 "$RELAY_PID" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$RELAY_PID" 2>/dev/null; then
		notok "relay: stops within 10 s of SIGTERM"
	else
		wait "$RELAY_PID"
		rc=$?
		RELAY_PID=
		if [ "$rc" -eq 0 ]; then ok "relay: stops on SIGTERM with status 0"; else notok "relay: stops on SIGTERM with status 0 (got $rc)"; fi
	fi
else
	notok "relay: still running to be stopped"
	RELAY_PID=
fi
sed 's/^/# relay: /' "$PGDIR/relay.log" >&2

# --- the systemd unit ---
unit=$(dpkg -L stripepay-relay | grep -E '/systemd/system/stripepay-relay\.service$' | head -n 1)
if [ -n "$unit" ] && [ -f "$unit" ]; then
	ok "unit: stripepay-relay.service installed at $unit"
	exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
	exe=${exec_start%% *}
	if [ "$(grep -c '^ExecStart=' "$unit")" = 1 ] && [ "$exe" = "$relay" ] && [ -x "$exe" ]; then
		ok "unit: ExecStart=$exec_start is the installed relay"
	else
		notok "unit: ExecStart is the installed relay (ExecStart=$exec_start, relay at $relay)"
	fi
	user=$(sed -n 's/^User=//p' "$unit")
	if [ -z "$user" ] || getent passwd "$user" >/dev/null; then
		ok "unit: its User= (${user:-none}) exists"
	else
		notok "unit: its User= ($user) exists"
	fi
	enabled=$(find /etc/systemd/system -name 'stripepay-relay.service' 2>/dev/null)
	if [ -z "$enabled" ]; then
		ok "unit: not enabled"
	else
		notok "unit: not enabled (found: $enabled)"
	fi
else
	notok "unit: stripepay-relay.service in the package"
fi

# --- removal ---
if [ -n "$PGDIR" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PGDIR/data" -m fast -w stop >&2; then
	ok "cluster: stops"
else
	notok "cluster: stops"
fi
if apt-get purge -y "postgresql-$MAJOR-$EXT" stripepay-relay >&2 &&
	[ ! -e "/usr/lib/postgresql/$MAJOR/lib/$EXT.so" ] && [ ! -e "$relay" ] && [ ! -e "$unit" ] &&
	! ls "/usr/share/postgresql/$MAJOR/extension/$EXT"* >/dev/null 2>&1; then
	ok "remove: apt-get purge removes both packages and their files"
else
	notok "remove: apt-get purge removes both packages and their files"
fi

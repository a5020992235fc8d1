# Debian chroots for building and testing on other PostgreSQL majors from a
# Debian 12 host: 17 on trixie, 18 on sid, 15 on bookworm.  Source it, then:
#
#   sp_chroot_ensure 17             # make (or reuse) the trixie chroot
#   sp_chroot_run 17 make           # run a command in it, as root
#
# A chroot lives in $SP_CHROOT_DIR/<suite> and is complete once its stamp
# file is there; one without a stamp is a broken build and is made anew.
# sp_chroot_run mounts /proc, /dev, /dev/pts, /dev/shm, /sys (read-only), a
# fresh /tmp and the project tree (at the same absolute path as on the host)
# in a private mount and PID namespace of its own: whatever the command
# leaves running is killed when it ends, and every mount goes with it, on
# success, failure, Ctrl-C or even SIGKILL.  Where unshare(1) cannot make
# namespaces (SP_CHROOT_UNSHARE=0 forces this), the mounts are made on the
# host and undone by a trap, and the processes left in the chroot are killed.
#
# Needs root.  Uses debootstrap's default mirror and keyring.
#
# Variables (set them before calling; the defaults are shown):
#   SP_CHROOT_DIR=/var/tmp/stripepay-chroots   where the chroots live
#   SP_CHROOT_PROJECT=<this repository's root> bound into the chroot
#   SP_CHROOT_BINDS=$SP_CHROOT_PROJECT          absolute paths (directories or
#                                               files) bound in at the same
#                                               path, space-separated
#   SP_CHROOT_TMP=tmpfs      tmpfs: a fresh, empty /tmp for each run;
#                            keep: the chroot's own, kept between runs
#   SP_CHROOT_ENV=CI         names of host variables passed into the
#                            chroot; the rest of its environment is clean
#   SP_CHROOT_EXTRA_PACKAGES=""  more Debian packages for every chroot
#   SP_CHROOT_UNSHARE=auto   1: namespaces or fail; 0: host mounts and a trap
#   SP_CHROOT_QUIET=         non-empty: no progress lines on stderr
# Inside, PG_CONFIG and SP_PG_VERSION name the chroot's PostgreSQL,
# SP_CHROOT_SUITE its suite; the cwd is the host's when that path exists
# inside (it does for anything bound in), else /.  The logs of debootstrap
# and apt go to $SP_CHROOT_DIR/<suite>.log, a lock per suite beside them.

SP_CHROOT_DIR=${SP_CHROOT_DIR:-/var/tmp/stripepay-chroots}
SP_CHROOT_PROJECT=${SP_CHROOT_PROJECT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
SP_CHROOT_STAMP=.stripepay-chroot-complete

_sp_chroot_log() { [ -n "${SP_CHROOT_QUIET:-}" ] || printf '==> chroot: %s\n' "$*" >&2; }
_sp_chroot_err() { printf 'error: chroot: %s\n' "$*" >&2; }

# sp_chroot_suite <pg-major>: the Debian suite that packages that major.
sp_chroot_suite() {
	case "${1:-}" in
	15) echo bookworm ;;
	17) echo trixie ;;
	18) echo sid ;;
	*)
		_sp_chroot_err "no Debian suite known for PostgreSQL major '${1:-}' (15, 17 and 18 are)"
		return 2
		;;
	esac
}

# sp_chroot_path <pg-major>: the chroot's directory (whether made or not).
sp_chroot_path() {
	local suite
	suite=$(sp_chroot_suite "$1") || return
	echo "${SP_CHROOT_DIR%/}/$suite"
}

# The packages a chroot for <pg-major> gets, one per line, sorted.
sp_chroot_packages() {
	local n=$1
	# shellcheck disable=SC2086 # the extras are a space-separated list
	printf '%s\n' "postgresql-$n" "postgresql-server-dev-$n" build-essential \
		pkg-config libcurl4-openssl-dev libssl-dev libjson-c-dev libmicrohttpd-dev \
		libpq-dev python3 procps ca-certificates valgrind wrk \
		${SP_CHROOT_EXTRA_PACKAGES:-} | sort -u
}

# Extra apt options a suite needs.  sid as mirrored here is a frozen copy
# whose Release file is past its Valid-Until date: apt refuses it without this.
_sp_chroot_apt_opts() {
	case "$1" in
	sid | unstable) echo "-o Acquire::Check-Valid-Until=false" ;;
	esac
}

_sp_chroot_need_root() {
	[ "$(id -u)" -eq 0 ] && return 0
	_sp_chroot_err "must run as root (debootstrap, mount and chroot need it)"
	return 1
}

# A guard against deleting or mounting under a silly directory.
_sp_chroot_sane_dir() {
	case "$1" in
	"" | / | /usr | /usr/* | /etc | /etc/* | /bin | /sbin | /lib | /lib64 | /proc* | /sys* | /dev*)
		_sp_chroot_err "refusing to use '$1' as a chroot directory"
		return 1
		;;
	/*/*) return 0 ;;
	*)
		_sp_chroot_err "the chroot directory must be an absolute path two levels deep at least: '$1'"
		return 1
		;;
	esac
}

# Mount points at or below <dir>, in the current mount namespace, deepest
# first (mountinfo escapes space, tab, newline and backslash as octal).
_sp_chroot_mounts_below() {
	local dir=${1%/}
	awk -v d="$dir" '
		function unescape(s,   out, i, c) {
			out = ""
			for (i = 1; i <= length(s); i++) {
				c = substr(s, i, 1)
				if (c == "\\" && substr(s, i + 1, 3) ~ /^[0-7][0-7][0-7]$/) {
					out = out sprintf("%c", (substr(s, i + 1, 1) * 64) + (substr(s, i + 2, 1) * 8) + substr(s, i + 3, 1))
					i += 3
				} else {
					out = out c
				}
			}
			return out
		}
		{ m = unescape($5); if (m == d || index(m, d "/") == 1) print length(m) "\t" m }
	' /proc/self/mountinfo | sort -rn -k1,1 | cut -f2-
}

# Unmounts whatever is still mounted at or below <dir> (a crashed run's
# leftovers); fails when something stays mounted.
_sp_chroot_umount_below() {
	local dir=$1 m left
	while IFS= read -r m; do
		[ -n "$m" ] || continue
		_sp_chroot_log "unmounting leftover $m"
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done < <(_sp_chroot_mounts_below "$dir")
	left=$(_sp_chroot_mounts_below "$dir")
	if [ -n "$left" ]; then
		_sp_chroot_err "still mounted below $dir: ${left//$'\n'/ }"
		return 1
	fi
}

# How runs keep their mounts apart: prints "ns" (private mount and PID
# namespaces, by unshare) or "host" (mounts on the host's, undone by a trap);
# fails when SP_CHROOT_UNSHARE=1 asks for namespaces that cannot be had.
_sp_chroot_mode() {
	case "${SP_CHROOT_UNSHARE:-auto}" in
	0 | no | false) echo host; return 0 ;;
	esac
	if [ -z "${_SP_CHROOT_UNSHARE_OK:-}" ]; then
		_SP_CHROOT_UNSHARE_OK=no
		if command -v unshare >/dev/null 2>&1 &&
			unshare --mount --pid --fork --kill-child --propagation private true >/dev/null 2>&1; then
			_SP_CHROOT_UNSHARE_OK=yes
		fi
	fi
	if [ "$_SP_CHROOT_UNSHARE_OK" = yes ]; then
		echo ns
		return 0
	fi
	case "${SP_CHROOT_UNSHARE:-auto}" in
	1 | yes | true)
		_sp_chroot_err "unshare cannot make mount and PID namespaces here (SP_CHROOT_UNSHARE=1)"
		return 2
		;;
	esac
	echo host
}

# The part of a run that mounts, runs the command in the chroot and cleans
# up.  It runs as a process of its own (as PID 1 of a new PID namespace when
# namespaces can be had); it is sent there whole with declare -f, and gets
# its inputs from _SPC_* variables, which do not reach the command.
_sp_chroot_inner() {
	local d=$_SPC_DIR rc=0 p
	local -a mounts=()
	_spc_cleanup() {
		local i p killed=0
		trap - EXIT INT TERM HUP
		if [ "$$" -eq 1 ]; then
			# PID 1 of our own namespace: whatever the command left
			# running (a server, say) goes now
			for p in "$d"/proc/[0-9]*; do
				[ "${p##*/}" = 1 ] || killed=$((killed + 1))
			done
			[ "$killed" -eq 0 ] || kill -KILL -1 2>/dev/null
		else
			for p in /proc/[0-9]*; do
				[ "$(readlink "$p/root" 2>/dev/null)" = "$d" ] || continue
				kill -KILL "${p##*/}" 2>/dev/null && killed=$((killed + 1))
			done
			[ "$killed" -eq 0 ] || sleep 0.2
		fi
		[ "$killed" -eq 0 ] || printf '==> chroot: killed %d process(es) the command left running\n' "$killed" >&2
		for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
			umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null ||
				printf 'error: chroot: could not unmount %s\n' "${mounts[i]}" >&2
		done
		mounts=()
	}
	_spc_mount() { # <target> <mount args...>: mounts, keeps it from propagating, records it
		local t=$1
		shift
		mount "$@" "$t" || return
		mounts+=("$t")
		mount --make-private "$t"
	}
	trap '_spc_cleanup' EXIT
	trap 'rc=130; exit 130' INT
	trap 'rc=143; exit 143' TERM
	trap 'rc=129; exit 129' HUP

	# the resolver of the moment; a symlink there could point outside the chroot
	rm -f "$d/etc/resolv.conf"
	cp -L /etc/resolv.conf "$d/etc/resolv.conf" 2>/dev/null || true

	mkdir -p "$d/proc" "$d/dev" "$d/sys" "$d/tmp"
	_spc_mount "$d/proc" -t proc proc || exit 125
	_spc_mount "$d/dev" --bind /dev || exit 125
	if [ -d /dev/pts ] && [ -d "$d/dev/pts" ]; then
		_spc_mount "$d/dev/pts" --bind /dev/pts || exit 125
	fi
	if [ -d "$d/dev/shm" ]; then # PostgreSQL's dynamic shared memory lives here
		_spc_mount "$d/dev/shm" -t tmpfs -o mode=1777,nosuid,nodev shm || exit 125
	fi
	if _spc_mount "$d/sys" --bind /sys; then
		mount -o remount,bind,ro "$d/sys" 2>/dev/null || true
	fi
	if [ "$_SPC_TMP" = tmpfs ]; then
		_spc_mount "$d/tmp" -t tmpfs -o mode=1777,nosuid,nodev tmp || exit 125
	fi
	while IFS= read -r p; do
		[ -n "$p" ] || continue
		if [ -d "$p" ]; then
			mkdir -p "$d$p" || exit 125
		else # a single file
			mkdir -p "$(dirname "$d$p")" && { [ -e "$d$p" ] || : >"$d$p"; } || exit 125
		fi
		_spc_mount "$d$p" --bind "$p" || exit 125
	done <<<"$_SPC_BINDS"

	local cwd=$_SPC_CWD
	[ -d "$d$cwd" ] || cwd=/
	local -a envs=(
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/postgresql/$_SPC_MAJOR/bin"
		HOME=/root USER=root LOGNAME=root SHELL=/bin/bash LANG=C.UTF-8
		"TERM=${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive
		"PG_CONFIG=/usr/lib/postgresql/$_SPC_MAJOR/bin/pg_config"
		"SP_PG_VERSION=$_SPC_MAJOR" "SP_CHROOT_SUITE=$_SPC_SUITE"
	)
	for p in $_SPC_ENV; do
		[ -n "${!p+x}" ] && envs+=("$p=${!p}")
	done
	unset _SPC_DIR _SPC_BINDS _SPC_TMP _SPC_CWD _SPC_ENV _SPC_MAJOR _SPC_SUITE
	# shellcheck disable=SC2016 # expanded by the chroot's sh
	chroot "$d" /usr/bin/env -i "${envs[@]}" /bin/sh -c 'cd "$0" && exec "$@"' "$cwd" "$@"
	rc=$?
	_spc_cleanup
	exit "$rc"
}

# Runs <command...> in the chroot at <dir> for <pg-major>, with the binds in
# _SPC_BINDS.  No lock, no stamp check: the callers do that.
_sp_chroot_exec() {
	local major=$1 dir=$2 suite
	shift 2
	suite=$(sp_chroot_suite "$major") || return
	local -a wrap=()
	local mode
	mode=$(_sp_chroot_mode) || return 125
	[ "$mode" = host ] || wrap=(unshare --mount --pid --fork --kill-child --propagation private)
	[ $# -gt 0 ] || set -- /bin/bash
	_SPC_DIR=$dir _SPC_MAJOR=$major _SPC_SUITE=$suite _SPC_TMP=${SP_CHROOT_TMP:-tmpfs} \
		_SPC_CWD=$PWD _SPC_ENV=${SP_CHROOT_ENV-CI} _SPC_BINDS=${_SPC_BINDS:-} \
		"${wrap[@]}" bash -c "$(declare -f _sp_chroot_inner); _sp_chroot_inner \"\$@\"" sp-chroot "$@"
}

# Takes the lock of a suite on a new fd, whose number goes in _SP_CHROOT_LOCKFD.
# <mode> is -x (exclusive: making, changing, removing) or -s (shared: using).
_sp_chroot_lock() {
	local suite=$1 mode=$2 fd
	mkdir -p "$SP_CHROOT_DIR" || return
	exec {fd}>>"${SP_CHROOT_DIR%/}/.$suite.lock" || return
	if ! flock -n "$mode" "$fd"; then
		_sp_chroot_log "waiting for another run's lock on the $suite chroot"
		flock "$mode" "$fd" || { exec {fd}>&-; return 1; }
	fi
	_SP_CHROOT_LOCKFD=$fd
}
_sp_chroot_unlock() {
	[ -n "${_SP_CHROOT_LOCKFD:-}" ] || return 0
	exec {_SP_CHROOT_LOCKFD}>&-
	_SP_CHROOT_LOCKFD=
}

# The package list a complete chroot was made with, or nothing.
_sp_chroot_stamp_packages() {
	[ ! -f "$1/$SP_CHROOT_STAMP" ] || sed -n 's/^packages=//p' "$1/$SP_CHROOT_STAMP"
}

# Whether the chroot of <pg-major> at <dir> is complete: stamped, with every
# package asked for now (a stamp may list more: extras asked for earlier).
_sp_chroot_complete() {
	local have p
	[ -f "$2/$SP_CHROOT_STAMP" ] || return 1
	have=" $(_sp_chroot_stamp_packages "$2") "
	for p in $(sp_chroot_packages "$1"); do
		case "$have" in *" $p "*) ;; *) return 1 ;; esac
	done
}

# Installs the packages of <pg-major> into the chroot at <dir>.
_sp_chroot_install() {
	local major=$1 dir=$2 suite log opts
	suite=$(sp_chroot_suite "$major") || return
	log="${SP_CHROOT_DIR%/}/$suite.log"
	opts=$(_sp_chroot_apt_opts "$suite")
	_sp_chroot_log "installing PostgreSQL $major and the build tools into $suite (log: $log)"
	_SPC_BINDS='' SP_CHROOT_ENV='' SP_CHROOT_TMP=tmpfs _sp_chroot_exec "$major" "$dir" /bin/sh -ec "
		apt-get $opts update
		apt-get $opts install -y $(sp_chroot_packages "$major" | tr '\n' ' ')
		apt-get clean
	" >>"$log" 2>&1 || {
		tail -n 30 "$log" >&2
		_sp_chroot_err "installing packages into the $suite chroot failed (log: $log)"
		return 1
	}
}

# Writes what the chroot needs before apt runs in it.
_sp_chroot_configure() {
	local dir=$1 suite=$2
	# no service may start inside
	printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
	chmod 755 "$dir/usr/sbin/policy-rc.d"
	mkdir -p "$dir/etc/apt/apt.conf.d" "$dir/etc/dpkg/dpkg.cfg.d" "$dir/etc/postgresql-common"
	{
		echo 'APT::Install-Recommends "false";'
		echo 'APT::Install-Suggests "false";'
		echo 'Acquire::Retries "3";'
		echo 'Acquire::Languages "none";'
		echo 'Dpkg::Options { "--force-confdef"; "--force-confold"; };'
		[ -z "$(_sp_chroot_apt_opts "$suite")" ] || echo 'Acquire::Check-Valid-Until "false";'
	} >"$dir/etc/apt/apt.conf.d/90stripepay"
	# no manuals or docs: a third less to download, unpack and keep
	cat >"$dir/etc/dpkg/dpkg.cfg.d/90stripepay-nodoc" <<-'EOF'
		path-exclude=/usr/share/doc/*
		path-include=/usr/share/doc/*/copyright
		path-exclude=/usr/share/man/*
		path-exclude=/usr/share/info/*
	EOF
	# the tests make their own throwaway clusters; no "main" one at install
	echo 'create_main_cluster = false' >"$dir/etc/postgresql-common/createcluster.conf"
	echo "sp-$suite" >"$dir/etc/debian_chroot"
	rm -f "$dir/etc/resolv.conf"
	cp -L /etc/resolv.conf "$dir/etc/resolv.conf"
}

_sp_chroot_host_debootstrap() {
	command -v debootstrap >/dev/null 2>&1 && return 0
	[ -x /usr/sbin/debootstrap ] && return 0
	_sp_chroot_log "installing debootstrap on the host"
	export DEBIAN_FRONTEND=noninteractive
	apt-get install -y -qq debootstrap >/dev/null 2>&1 ||
		{ apt-get update -qq >/dev/null && apt-get install -y -qq debootstrap >/dev/null; } ||
		{ _sp_chroot_err "could not install debootstrap"; return 1; }
}

# Makes the chroot at <dir> from nothing (the caller holds the lock).
_sp_chroot_create() {
	local major=$1 dir=$2 suite log started=$SECONDS
	suite=$(sp_chroot_suite "$major") || return
	log="${SP_CHROOT_DIR%/}/$suite.log"
	_sp_chroot_host_debootstrap || return
	if [ -e "$dir" ]; then
		_sp_chroot_log "removing the half-made $suite chroot"
		_sp_chroot_umount_below "$dir" || return
		rm -rf --one-file-system "$dir" || return
	fi
	: >"$log"
	_sp_chroot_log "debootstrapping $suite into $dir (log: $log)"
	PATH="$PATH:/usr/sbin:/sbin" debootstrap --variant=minbase "$suite" "$dir" >>"$log" 2>&1 || {
		tail -n 30 "$log" >&2
		_sp_chroot_umount_below "$dir" >/dev/null 2>&1
		_sp_chroot_err "debootstrap of $suite failed (log: $log)"
		return 1
	}
	_sp_chroot_log "debootstrap of $suite took $((SECONDS - started)) s"
	# debootstrap may leave bind mounts behind when it runs in a container
	_sp_chroot_umount_below "$dir" || return
	_sp_chroot_configure "$dir" "$suite" || return
	_sp_chroot_install "$major" "$dir" || return
	_sp_chroot_write_stamp "$major" "$dir" || return
	_sp_chroot_log "the $suite chroot for PostgreSQL $major is ready after $((SECONDS - started)) s"
}

_sp_chroot_write_stamp() {
	local major=$1 dir=$2 suite
	suite=$(sp_chroot_suite "$major") || return
	{
		echo "suite=$suite"
		echo "major=$major"
		echo "packages=$({ sp_chroot_packages "$major"; _sp_chroot_stamp_packages "$dir" | tr ' ' '\n'; } | sed '/^$/d' | sort -u | tr '\n' ' ')"
		echo "gcc=$(chroot "$dir" gcc -dumpfullversion 2>/dev/null)"
		echo "postgresql=$(chroot "$dir" "/usr/lib/postgresql/$major/bin/pg_config" --version 2>/dev/null)"
		echo "completed=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
	} >"$dir/$SP_CHROOT_STAMP.new" && mv "$dir/$SP_CHROOT_STAMP.new" "$dir/$SP_CHROOT_STAMP"
}

# sp_chroot_ensure <pg-major>: makes the chroot for that major unless a
# complete one is there already.  A complete one whose package list has
# grown (SP_CHROOT_EXTRA_PACKAGES) gets the new packages, not a rebuild.
sp_chroot_ensure() {
	local major=${1:-} suite dir rc=0
	suite=$(sp_chroot_suite "$major") || return
	_sp_chroot_need_root || return
	dir=$(sp_chroot_path "$major")
	_sp_chroot_sane_dir "$dir" || return
	! _sp_chroot_complete "$major" "$dir" || return 0
	_sp_chroot_lock "$suite" -x || return
	# another run may have made it while we waited
	if [ ! -f "$dir/$SP_CHROOT_STAMP" ]; then
		_sp_chroot_create "$major" "$dir" || rc=$?
	elif ! _sp_chroot_complete "$major" "$dir"; then
		_sp_chroot_umount_below "$dir" &&
			_sp_chroot_install "$major" "$dir" &&
			_sp_chroot_write_stamp "$major" "$dir" || rc=$?
	fi
	_sp_chroot_unlock
	return "$rc"
}

# sp_chroot_run <pg-major> [command...]: runs the command (default: bash) in
# that major's chroot as root, made first when need be; returns its status
# (125 when the chroot could not be set up).
sp_chroot_run() (
	set +e # the caller's errexit would skip the clean-up below
	major=${1:-}
	suite=$(sp_chroot_suite "$major") || exit 125
	shift
	_sp_chroot_need_root || exit 125
	dir=$(sp_chroot_path "$major")
	_sp_chroot_sane_dir "$dir" || exit 125
	binds=
	for p in ${SP_CHROOT_BINDS-$SP_CHROOT_PROJECT}; do
		case "$p" in
		/?*) ;;
		*) _sp_chroot_err "bind path '$p' is not absolute or is /"; exit 125 ;;
		esac
		if [ -d "$p" ]; then
			p=$(cd "$p" && pwd -P)
		elif [ -f "$p" ]; then
			p=$(cd "$(dirname "$p")" && pwd -P)/$(basename "$p")
		else
			_sp_chroot_err "bind path '$p' is neither a directory nor a file"
			exit 125
		fi
		binds+=$p$'\n'
	done
	# shared lock while namespaces keep each run's mounts apart; exclusive
	# when the mounts are on the host's (one run at a time then)
	mode=$(_sp_chroot_mode) || exit 125
	_SP_CHROOT_UNSHARE_OK=$([ "$mode" = ns ] && echo yes || echo no)
	if [ "$mode" = ns ]; then mode=-s; else mode=-x; fi
	_sp_chroot_lock "$suite" "$mode" || exit 125
	if ! _sp_chroot_complete "$major" "$dir"; then
		_sp_chroot_unlock
		sp_chroot_ensure "$major" || exit 125
		_sp_chroot_lock "$suite" "$mode" || exit 125
	fi
	_sp_chroot_umount_below "$dir" || exit 125
	# the handlers only defer Ctrl-C until the command (which gets it too) ends
	interrupted=
	trap 'interrupted=130' INT
	trap 'interrupted=143' TERM
	trap 'interrupted=129' HUP
	lockfd=$_SP_CHROOT_LOCKFD
	_SPC_BINDS=$binds _sp_chroot_exec "$major" "$dir" "$@" {lockfd}>&-
	rc=$?
	[ "$mode" = -s ] || _sp_chroot_umount_below "$dir" >/dev/null 2>&1
	[ -z "$interrupted" ] || [ "$rc" -ne 0 ] || rc=$interrupted
	exit "$rc"
)

# sp_chroot_update <pg-major>: brings the chroot's packages up to date with
# the mirror (apt-get dist-upgrade); the chroots are otherwise left as made.
sp_chroot_update() {
	local major=${1:-} suite dir opts rc=0
	suite=$(sp_chroot_suite "$major") || return
	sp_chroot_ensure "$major" || return
	dir=$(sp_chroot_path "$major")
	opts=$(_sp_chroot_apt_opts "$suite")
	_sp_chroot_lock "$suite" -x || return
	_sp_chroot_umount_below "$dir" &&
		_SPC_BINDS='' SP_CHROOT_ENV='' _sp_chroot_exec "$major" "$dir" /bin/sh -ec \
			"apt-get $opts update; apt-get $opts dist-upgrade -y; apt-get clean" || rc=$?
	[ "$rc" -ne 0 ] || _sp_chroot_write_stamp "$major" "$dir" || rc=$?
	_sp_chroot_unlock
	return "$rc"
}

# sp_chroot_remove <pg-major>: unmounts and deletes that major's chroot.
sp_chroot_remove() {
	local major=${1:-} suite dir rc=0
	suite=$(sp_chroot_suite "$major") || return
	_sp_chroot_need_root || return
	dir=$(sp_chroot_path "$major")
	_sp_chroot_sane_dir "$dir" || return
	_sp_chroot_lock "$suite" -x || return
	if [ -e "$dir" ]; then
		_sp_chroot_umount_below "$dir" && rm -rf --one-file-system "$dir" || rc=$?
	fi
	_sp_chroot_unlock
	return "$rc"
}

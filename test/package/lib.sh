# shellcheck shell=bash
# Helpers of test/package/: building the Debian packages in a copy of the
# tree (on this host or in a chroot of test/lib/chroot.sh), and a clean
# minimal Debian 12 chroot to install them into.  Source it; needs bash and
# root.
#
# Variables (defaults shown):
#   SPK_OUT=/var/tmp/stripepay-packages      built packages, one folder per
#                                            build: host, trixie, sid, ...
#   SPK_CHROOT_DIR=${SP_CHROOT_DIR:-/var/tmp/stripepay-chroots}
#   SPK_CLEAN_SUITE=bookworm                 the clean chroot's suite; it
#                                            lives in $SPK_CHROOT_DIR/clean-<suite>
#   SPK_SRC=<this repository>                the tree to package
#   SPK_QUIET=                               non-empty: no progress lines

SPK_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SPK_PROJECT=$(cd "$SPK_HERE/../.." && pwd)
SPK_OUT=${SPK_OUT:-/var/tmp/stripepay-packages}
SPK_CHROOT_DIR=${SPK_CHROOT_DIR:-${SP_CHROOT_DIR:-/var/tmp/stripepay-chroots}}
SPK_CLEAN_SUITE=${SPK_CLEAN_SUITE:-bookworm}
SPK_CLEAN_STAMP=.stripepay-clean-chroot-complete
# What the clean chroot holds beyond debootstrap's minbase: the server the
# package extends, nothing of the build
SPK_CLEAN_PACKAGES="postgresql-15"
# What the build chroots of test/lib/chroot.sh need beyond their own list
SPK_CHROOT_BUILD_PACKAGES="debhelper postgresql-server-dev-all"

spk_log() { [ -n "${SPK_QUIET:-}" ] || printf '==> package: %s\n' "$*" >&2; }
spk_err() { printf 'error: package: %s\n' "$*" >&2; }

# The extension's version, from the packaged tree's control file.
spk_extversion() {
	sed -n "s/^default_version = '\(.*\)'/\1/p" "${SPK_SRC:-$SPK_PROJECT}/stripepay.control"
}

# spk_copy_tree <dest>: the project's source files (tracked, and untracked
# ones git does not ignore, so work not yet committed is packaged too)
# without build products, into <dest>.  SPK_SRC=<dir> packages another tree
# instead (a snapshot, say); one that is not a git work tree is copied whole
# and "make clean"ed.
spk_copy_tree() {
	local dest=$1 src=${SPK_SRC:-$SPK_PROJECT}
	mkdir -p "$dest" || return
	if [ "$(git -C "$src" rev-parse --show-toplevel 2>/dev/null)" = "$(cd "$src" && pwd -P)" ]; then
		(cd "$src" && git ls-files -z -co --exclude-standard) |
			(cd "$src" && tar --null --no-recursion -T - -cf - 2>/dev/null) |
			tar -C "$dest" -xf - || return
	else
		cp -a "$src/." "$dest/" || return
		make -C "$dest" clean >/dev/null 2>&1 || true
	fi
	# a file listed but deleted in the work tree is simply absent
	[ -f "$dest/debian/rules" ] || { spk_err "no debian/rules in the copy"; return 1; }
}

# Installs on this host whatever dpkg-checkbuilddeps says the build lacks.
spk_host_builddeps() {
	local src=$1 missing
	command -v dpkg-checkbuilddeps >/dev/null 2>&1 || {
		spk_log "installing dpkg-dev"
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dpkg-dev >/dev/null || return
	}
	missing=$(cd "$src" && dpkg-checkbuilddeps 2>&1 >/dev/null | sed -n 's/.*Unmet build dependencies: //p')
	[ -n "$missing" ] || return 0
	# "a (>= 1), b | c" -> the first alternative of each, without versions
	missing=$(echo "$missing" | sed -e 's/([^)]*)//g' -e 's/|[^,]*//g' -e 's/,/ /g' -e 's/:any//g')
	spk_log "installing build dependencies on the host: $missing"
	# shellcheck disable=SC2086 # a list of names
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null 2>&1 || {
		apt-get update -qq >/dev/null 2>&1
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
	}
}

# spk_build_host <outdir> <log>: dpkg-buildpackage -us -uc -b in a copy of
# the tree on this host; the .deb files end in <outdir>.
spk_build_host() {
	local out=$1 log=$2 work ver rc=0
	rm -rf "$out" # no package of an earlier build passes for this one's
	work=$(mktemp -d /tmp/sp-pkg-copy.XXXXXX) || return
	ver=$(spk_extversion)
	spk_copy_tree "$work/stripepay-$ver" || { rm -rf "$work"; return 1; }
	spk_host_builddeps "$work/stripepay-$ver" || { rm -rf "$work"; return 1; }
	spk_log "building on the host in $work (log: $log)"
	(
		cd "$work/stripepay-$ver" &&
			pg_buildext updatecontrol &&
			dpkg-buildpackage -us -uc -b
	) >"$log" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ]; then
		mkdir -p "$out" && mv "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$out"/ || rc=1
	else
		tail -n 40 "$log" >&2
	fi
	rm -rf "$work"
	return "$rc"
}

# spk_build_chroot <pg-major> <outdir> <log>: the same in the build chroot
# of test/lib/chroot.sh for that major, which must exist already (it gets
# debhelper and postgresql-server-dev-all added).  Returns 77 when there is
# no such chroot.
spk_build_chroot() {
	local major=$1 out=$2 log=$3 work ver rc=0 dir
	# shellcheck source=test/lib/chroot.sh
	. "$SPK_PROJECT/test/lib/chroot.sh"
	dir=$(SP_CHROOT_DIR=$SPK_CHROOT_DIR sp_chroot_path "$major") || return
	[ -f "$dir/.stripepay-chroot-complete" ] || return 77
	rm -rf "$out"
	work=$(mktemp -d /var/tmp/sp-pkg-copy.XXXXXX) || return
	ver=$(spk_extversion)
	spk_copy_tree "$work/stripepay-$ver" || { rm -rf "$work"; return 1; }
	spk_log "building for PostgreSQL $major in $dir (log: $log)"
	# shellcheck disable=SC2016 # expanded inside the chroot
	SP_CHROOT_DIR=$SPK_CHROOT_DIR SP_CHROOT_BINDS="$work" SP_CHROOT_ENV='' SP_CHROOT_QUIET=1 \
		SP_CHROOT_EXTRA_PACKAGES="${SP_CHROOT_EXTRA_PACKAGES:+$SP_CHROOT_EXTRA_PACKAGES }$SPK_CHROOT_BUILD_PACKAGES" \
		sp_chroot_run "$major" /bin/sh -ec '
			cd "$1"
			pg_buildext updatecontrol
			dpkg-buildpackage -us -uc -b
		' sh "$work/stripepay-$ver" >"$log" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ]; then
		mkdir -p "$out" && mv "$work"/*.deb "$work"/*.changes "$work"/*.buildinfo "$out"/ || rc=1
	else
		tail -n 40 "$log" >&2
		[ "$rc" -ne 77 ] || rc=1
	fi
	rm -rf "$work"
	return "$rc"
}

# --- the clean chroot ---

spk_clean_path() { echo "${SPK_CHROOT_DIR%/}/clean-$SPK_CLEAN_SUITE"; }

# Mount points at or below <dir> in this mount namespace, deepest first.
spk_mounts_below() {
	local dir=${1%/}
	awk -v d="$dir" '{ m = $5; gsub(/\\040/, " ", m); if (m == d || index(m, d "/") == 1) print length(m) "\t" m }' \
		/proc/self/mountinfo | sort -rn -k1,1 | cut -f2-
}

# Unmounts whatever is left mounted at or below <dir>; fails if some stays.
spk_umount_below() {
	local m
	while IFS= read -r m; do
		[ -n "$m" ] || continue
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done < <(spk_mounts_below "$1")
	[ -z "$(spk_mounts_below "$1")" ] || { spk_err "still mounted below $1"; return 1; }
}

# Whether unshare can give this run a private mount and PID namespace.
spk_can_unshare() {
	[ "${SPK_UNSHARE:-auto}" != 0 ] || return 1
	unshare --mount --pid --fork --kill-child --propagation private true >/dev/null 2>&1
}

# spk_in_namespace <command...>: runs the command in a private mount and PID
# namespace when it can be had (whatever it mounts and leaves running goes
# with it), else as it is.
spk_in_namespace() {
	if spk_can_unshare; then
		unshare --mount --pid --fork --kill-child --propagation private "$@"
	else
		"$@"
	fi
}

# The sources of a Debian 12 as its installer writes them.
_spk_clean_sources() {
	cat <<-EOF
		Types: deb
		URIs: http://deb.debian.org/debian
		Suites: $SPK_CLEAN_SUITE $SPK_CLEAN_SUITE-updates
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

		Types: deb
		URIs: http://deb.debian.org/debian-security
		Suites: $SPK_CLEAN_SUITE-security
		Components: main
		Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
	EOF
}

# spk_chroot_sh <dir> <script> [args...]: runs "sh -ec <script>" in the
# chroot at <dir> with /proc, /dev, /dev/shm mounted for it and unmounted
# after (in a namespace of its own when possible).
spk_chroot_sh() {
	local dir=$1
	shift
	# shellcheck disable=SC2016 # expanded by the inner bash
	spk_in_namespace bash -c '
		d=$1; shift
		done_=0
		cleanup() {
			[ "$done_" = 1 ] && return; done_=1
			for p in /proc/[0-9]*; do
				[ "$(readlink "$p/root" 2>/dev/null)" = "$d" ] && kill -KILL "${p##*/}" 2>/dev/null
			done
			for m in "$d/dev/shm" "$d/dev/pts" "$d/dev" "$d/proc"; do
				mountpoint -q "$m" 2>/dev/null && { umount "$m" 2>/dev/null || umount -l "$m"; }
			done
		}
		trap cleanup EXIT
		trap "exit 130" INT; trap "exit 143" TERM; trap "exit 129" HUP
		mount -t proc proc "$d/proc" &&
			mount --bind /dev "$d/dev" &&
			mount -t tmpfs -o mode=1777,nosuid,nodev shm "$d/dev/shm" || exit 125
		rm -f "$d/etc/resolv.conf"; cp -L /etc/resolv.conf "$d/etc/resolv.conf" 2>/dev/null
		chroot "$d" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
			DEBIAN_FRONTEND=noninteractive /bin/sh -ec "$@"
	' spk-chroot "$dir" "$@"
}

# spk_clean_ensure: makes the clean chroot (debootstrap --variant=minbase,
# then the server from the mirror) unless a complete one is there; a half
# made one (no stamp) is made anew.  Holds an exclusive lock while it works.
spk_clean_ensure() {
	local dir log fd rc=0 started=$SECONDS
	dir=$(spk_clean_path)
	log="${SPK_CHROOT_DIR%/}/clean-$SPK_CLEAN_SUITE.log"
	[ -f "$dir/$SPK_CLEAN_STAMP" ] && return 0
	mkdir -p "$SPK_CHROOT_DIR" || return
	exec {fd}>>"${SPK_CHROOT_DIR%/}/.clean-$SPK_CLEAN_SUITE.lock" || return
	flock -x "$fd" || { exec {fd}>&-; return 1; }
	if [ ! -f "$dir/$SPK_CLEAN_STAMP" ]; then
		(
			set -e
			if ! command -v debootstrap >/dev/null 2>&1 && [ ! -x /usr/sbin/debootstrap ]; then
				spk_log "installing debootstrap on the host"
				DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
			fi
			if [ -e "$dir" ]; then
				spk_log "removing the half-made clean chroot $dir"
				spk_umount_below "$dir"
				rm -rf --one-file-system "$dir"
			fi
			: >"$log"
			spk_log "debootstrap --variant=minbase $SPK_CLEAN_SUITE into $dir (log: $log)"
			# in a mount namespace: debootstrap's own mounts cannot outlive it
			spk_in_namespace env PATH="$PATH:/usr/sbin:/sbin" \
				debootstrap --variant=minbase "$SPK_CLEAN_SUITE" "$dir" http://deb.debian.org/debian >>"$log" 2>&1 ||
				{ tail -n 30 "$log" >&2; exit 1; }
			spk_umount_below "$dir"
			# a Debian 12 as installed: with its updates and security suites
			rm -f "$dir/etc/apt/sources.list"
			_spk_clean_sources >"$dir/etc/apt/sources.list.d/debian.sources"
			# no service starts in a chroot; no "main" cluster made at install
			printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
			chmod 755 "$dir/usr/sbin/policy-rc.d"
			mkdir -p "$dir/etc/postgresql-common"
			echo 'create_main_cluster = false' >"$dir/etc/postgresql-common/createcluster.conf"
			echo "stripepay-clean-$SPK_CLEAN_SUITE" >"$dir/etc/debian_chroot"
			spk_log "installing $SPK_CLEAN_PACKAGES into the clean chroot"
			spk_chroot_sh "$dir" "
				apt-get update
				apt-get install -y $SPK_CLEAN_PACKAGES
				apt-get clean
			" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }
			{
				echo "suite=$SPK_CLEAN_SUITE"
				echo "variant=minbase"
				echo "packages=$SPK_CLEAN_PACKAGES"
				echo "postgresql=$(chroot "$dir" /usr/lib/postgresql/15/bin/postgres --version 2>/dev/null)"
				echo "completed=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
			} >"$dir/$SPK_CLEAN_STAMP.new"
			mv "$dir/$SPK_CLEAN_STAMP.new" "$dir/$SPK_CLEAN_STAMP"
		) || rc=$?
		[ "$rc" -ne 0 ] || spk_log "clean chroot ready after $((SECONDS - started)) s"
	fi
	exec {fd}>&-
	return "$rc"
}

# spk_clean_remove: deletes the clean chroot (the next run makes it anew).
spk_clean_remove() {
	local dir fd
	dir=$(spk_clean_path)
	case "$dir" in /*/*/*) ;; *) spk_err "refusing to remove '$dir'"; return 1 ;; esac
	mkdir -p "$SPK_CHROOT_DIR" || return
	exec {fd}>>"${SPK_CHROOT_DIR%/}/.clean-$SPK_CLEAN_SUITE.lock" || return
	flock -x "$fd" || { exec {fd}>&-; return 1; }
	[ ! -e "$dir" ] || { spk_umount_below "$dir" && rm -rf --one-file-system "$dir"; }
	exec {fd}>&-
}

# spk_clean_run <rundir> [--host] <command...>: runs the command in a
# throwaway copy of the clean chroot: an overlay whose lower layer is the
# clean chroot (left untouched) and whose upper layer is <rundir>/upper,
# with /proc, /dev, /dev/pts and /dev/shm mounted; files put in <rundir>/in
# appear at /tmp/spk.  With --host the command runs on the host instead,
# with SPK_MERGED naming the copy's root (for autopkgtest's chroot backend).  In a
# private mount and PID namespace when possible: the overlay, the mounts and
# every process the command leaves running (a server, say) go when it ends,
# on success, failure or a signal; a trap does the same otherwise.
spk_clean_run() {
	local run=$1 dir fd rc=0
	shift
	dir=$(spk_clean_path)
	[ -f "$dir/$SPK_CLEAN_STAMP" ] || { spk_err "no clean chroot at $dir"; return 1; }
	mkdir -p "$run/upper" "$run/work" "$run/merged" "$run/in" || return
	exec {fd}>>"${SPK_CHROOT_DIR%/}/.clean-$SPK_CLEAN_SUITE.lock" || return
	flock -s "$fd" || { exec {fd}>&-; return 1; }
	# shellcheck disable=SC2016 # expanded by the inner bash
	spk_in_namespace bash -c '
		lower=$1 run=$2; shift 2
		d=$run/merged
		mounted=()
		cleanup() {
			local i p n=0
			trap - EXIT INT TERM HUP
			for p in /proc/[0-9]*; do
				case "$(readlink "$p/root" 2>/dev/null)" in
				"$d" | "$d"/*) kill -KILL "${p##*/}" 2>/dev/null && n=$((n + 1)) ;;
				esac
			done
			[ "$n" -eq 0 ] || sleep 0.2
			for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
				umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" 2>/dev/null ||
					echo "error: package: could not unmount ${mounted[i]}" >&2
			done
			mounted=()
		}
		mnt() { local t=$1; shift; mount "$@" "$t" && mounted+=("$t"); }
		trap cleanup EXIT
		trap "exit 130" INT; trap "exit 143" TERM; trap "exit 129" HUP
		mnt "$d" -t overlay overlay -o "lowerdir=$lower,upperdir=$run/upper,workdir=$run/work" || exit 125
		mnt "$d/proc" -t proc proc || exit 125
		mnt "$d/dev" --bind /dev || exit 125
		mnt "$d/dev/shm" -t tmpfs -o mode=1777,nosuid,nodev shm || exit 125
		mkdir -p "$d/tmp/spk" && mnt "$d/tmp/spk" --bind "$run/in" || exit 125
		[ ! -d /dev/pts ] || mnt "$d/dev/pts" --bind /dev/pts || exit 125
		rm -f "$d/etc/resolv.conf"; cp -L /etc/resolv.conf "$d/etc/resolv.conf" 2>/dev/null
		if [ "$1" = --host ]; then
			shift
			SPK_MERGED=$d "$@"
		else
			chroot "$d" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
				DEBIAN_FRONTEND=noninteractive "$@"
		fi
		rc=$?
		cleanup
		exit "$rc"
	' spk-clean "$dir" "$run" "$@" || rc=$?
	exec {fd}>&-
	# the mounts were in the namespace; without one, make sure they are gone
	spk_umount_below "$run/merged" >/dev/null 2>&1
	return "$rc"
}

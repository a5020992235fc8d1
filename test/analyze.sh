#!/usr/bin/env bash
# Static analysis of every C file of the project ("make analyze"): gcc's
# -fanalyzer, cppcheck, and clang-tidy with the checks in .clang-tidy.  One
# check per tool and group of files; any finding fails its check and is
# printed.  Ends with "static-analysis: N passed, M failed".
#
# Needs gcc 12 or later, cppcheck and clang-tidy (Debian: gcc, cppcheck,
# clang-tidy), and the Postgres that PG_CONFIG names for its headers.
set -uo pipefail
. "$(dirname "$0")/lib/env.sh"
cd "$SP_ROOT" || exit 1

PG_CONFIG=${PG_CONFIG:-$(sp_pg_bindir)/pg_config}
CLANG_TIDY=${CLANG_TIDY:-clang-tidy}
out=$(mktemp -d "${TMPDIR:-/tmp}/stripepay-analyze.XXXXXX")
trap 'rm -rf "$out"' EXIT

server_inc=$("$PG_CONFIG" --includedir-server)
client_inc=$("$PG_CONFIG" --includedir)
version=$(sed -n "s/^default_version = '\(.*\)'/\1/p" stripepay.control)

# The flags each part is built with (Makefile, test/*/Makefile), minus the
# optimisation and sanitizer flags that do not change what is analysed.
ext_flags=(-std=gnu99 -D_GNU_SOURCE -isystem "$server_inc" -Isrc
	"-DSTRIPEPAY_VERSION=\"$version\"" $(pkg-config --cflags libcurl libcrypto))
relay_flags=(-std=gnu11 -pthread "-DRELAY_VERSION=\"$version\"" -isystem "$client_inc"
	$(pkg-config --cflags libmicrohttpd))
test_flags=(-std=gnu11 -D_GNU_SOURCE -Isrc/pure -Isrc/relay -Itest/unit -Itest/fuzz
	-DSP_EVENT_FIXTURES=\"test/fixtures/events\" $(pkg-config --cflags json-c libcrypto))

ext_files=(src/*.c src/pure/*.c)
relay_files=(src/relay/*.c)
unit_files=(test/unit/*.c)
other_test_files=(test/fuzz/*.c test/relay/*.c test/webhook/*.c)

passed=0
failed=0
# check <description> <log file> <status>: a check passes when the tool
# exited 0 and said nothing
check() {
	if [ "$3" -eq 0 ] && ! [ -s "$2" ]; then
		passed=$((passed + 1))
		echo "ok - $1"
	else
		failed=$((failed + 1))
		echo "not ok - $1"
		head -n 80 "$2"
	fi
}

have() {
	command -v "$1" >/dev/null 2>&1 && return 0
	echo "$1 not found (Debian package $2)" >"$out/missing"
	return 1
}

# Each tool function takes <name> <files...> -- <flags...>; group() splits
# them into name, files and flags.
name=
files=()
flags=()
group() {
	name=$1
	shift
	files=()
	while [ "$1" != -- ]; do files+=("$1"); shift; done
	shift
	flags=("$@")
}

gcc_analyze() {
	local f rc=0
	group "$@"
	: >"$out/$name.gcc"
	if ! have gcc gcc; then check "gcc -fanalyzer: $name" "$out/missing" 1; return; fi
	for f in "${files[@]}"; do
		gcc -fanalyzer -fdiagnostics-plain-output -Wall -Wextra "${flags[@]}" -c "$f" -o /dev/null \
			>>"$out/$name.gcc" 2>&1 || rc=1
	done
	check "gcc -fanalyzer: $name (${#files[@]} files)" "$out/$name.gcc" "$rc"
}

cppcheck_analyze() {
	local rc=0
	group "$@"
	if ! have cppcheck cppcheck; then check "cppcheck: $name" "$out/missing" 1; return; fi
	# One configuration, the one we build: x86-64 Linux with gcc, json-c
	# 0.15+ and OpenSSL 3 (the sources #error on anything older).
	cppcheck -q --enable=warning,performance,portability --error-exitcode=1 \
		--inline-suppr --std=c11 --platform=unix64 \
		--library=posix --library=gnu --library=openssl --library=libcurl \
		-D__GNUC__ -D__x86_64__ -D__linux__ \
		-DJSON_TOKENER_VALIDATE_UTF8 -DOPENSSL_VERSION_NUMBER=0x30000000L \
		"${flags[@]}" "${files[@]}" >"$out/$name.cppcheck" 2>&1 || rc=1
	check "cppcheck: $name (${#files[@]} files)" "$out/$name.cppcheck" "$rc"
}

tidy_analyze() {
	local rc=0
	group "$@"
	if ! have "$CLANG_TIDY" clang-tidy; then check "clang-tidy: $name" "$out/missing" 1; return; fi
	# "N warnings generated" counts the diagnostics in Postgres's headers
	# that .clang-tidy filters out; only a printed finding counts
	"$CLANG_TIDY" --quiet "${files[@]}" -- "${flags[@]}" 2>&1 |
		grep -vE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.$' >"$out/$name.tidy"
	rc=${PIPESTATUS[0]}
	check "clang-tidy: $name (${#files[@]} files)" "$out/$name.tidy" "$rc"
}

gcc_analyze extension "${ext_files[@]}" -- "${ext_flags[@]}" -fPIC
gcc_analyze relay "${relay_files[@]}" -- "${relay_flags[@]}"
# A failed CHECK returns from its test early, by design, and may leave that
# test's buffers behind: the run has failed already and nothing else leaks.
gcc_analyze "unit tests" "${unit_files[@]}" -- "${test_flags[@]}" -Wno-analyzer-malloc-leak
gcc_analyze "fuzz targets and other tests" "${other_test_files[@]}" -- "${test_flags[@]}"

cppcheck_analyze extension "${ext_files[@]}" -- -Isrc -I"$server_inc"
cppcheck_analyze relay "${relay_files[@]}" -- -Isrc/relay -I"$client_inc"
cppcheck_analyze tests "${unit_files[@]}" "${other_test_files[@]}" -- \
	-Isrc -Isrc/relay -Itest/unit -DSP_EVENT_FIXTURES=\"x\"

tidy_analyze extension "${ext_files[@]}" -- "${ext_flags[@]}"
tidy_analyze relay "${relay_files[@]}" -- "${relay_flags[@]}"

echo "static-analysis: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

# shellcheck shell=bash
#
# Shared by scripts/check and scripts/demo (sourced, not run).
#
# Works as root (PostgreSQL then runs as the `postgres` OS user) and as an
# ordinary user (sudo is used only to install missing Debian packages, and
# PostgreSQL runs as that user).

PGMOAT_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Debian packages needed to build, test, demo and benchmark pgmoat.
PGMOAT_PACKAGES=(
	build-essential autoconf automake libtool pkg-config
	libev-dev libssl-dev libpq-dev libidn-dev
	postgresql-15 postgresql-client-15
	clang-format pgbouncer openssl haproxy curl
)

say() { printf '%s\n' "$*"; }
warn() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() {
	warn "$*"
	exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as root: directly when root, else through sudo.
as_root() {
	if is_root; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		die "need root to run '$*' (no sudo found)"
	fi
}

# The OS user PostgreSQL runs as: postgres when we are root, else us.
pg_user() {
	if is_root; then echo postgres; else id -un; fi
}

# Runs a command as pg_user.
as_pg() {
	if is_root; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

# Prints the Debian packages of PGMOAT_PACKAGES that are not installed.
missing_packages() {
	local p status
	for p in "${PGMOAT_PACKAGES[@]}"; do
		status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
		[ "$status" = installed ] || echo "$p"
	done
}

# Installs whatever is missing; `apt-get update` runs only then, once.
ensure_packages() {
	if ! command -v dpkg-query >/dev/null 2>&1; then
		warn "not a Debian system: install ${PGMOAT_PACKAGES[*]} (or equivalents) yourself"
		return 0
	fi
	local missing
	missing=$(missing_packages | tr '\n' ' ')
	missing=${missing% }
	[ -z "$missing" ] && return 0
	say "Installing missing packages: $missing"
	as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q ||
		die "apt-get update failed"
	# shellcheck disable=SC2086 # one word per package
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing ||
		die "could not install: $missing"
}

# PostgreSQL's server binaries (initdb, pg_ctl, postgres, pg_basebackup).
pg_bindir() {
	if [ -n "${PGMOAT_PG_BINDIR:-}" ]; then
		echo "$PGMOAT_PG_BINDIR"
		return
	fi
	local d
	for d in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
		if [ -x "$d/postgres" ]; then
			echo "$d"
			return
		fi
	done
	die "PostgreSQL server binaries not found (package postgresql-15)"
}

# True if something accepts TCP connections on 127.0.0.1:$1.
port_in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# The first port from $1 on (up to $1+200) that nothing listens on.
free_port() {
	local p=$1
	while [ "$p" -lt $(($1 + 200)) ]; do
		if ! port_in_use "$p"; then
			echo "$p"
			return 0
		fi
		p=$((p + 1))
	done
	die "no free port found from $1"
}

# Waits up to $2 seconds for something to accept connections on port $1.
wait_for_port() {
	local port=$1 deadline=$((SECONDS + $2))
	while [ "$SECONDS" -lt "$deadline" ]; do
		port_in_use "$port" && return 0
		sleep 0.1
	done
	return 1
}

# Configures (if needed) and builds pgmoat out of tree in directory $1,
# passing the remaining arguments to configure.
build_in() {
	local dir=$1
	shift
	if [ ! -x "$PGMOAT_ROOT/configure" ]; then
		(cd "$PGMOAT_ROOT" && autoreconf -fi) || die "autoreconf failed"
	fi
	mkdir -p "$dir"
	if [ ! -f "$dir/Makefile" ]; then
		(cd "$dir" && "$PGMOAT_ROOT/configure" "$@") || die "configure failed in $dir"
	fi
	make -C "$dir" -j2 || die "build failed in $dir"
}

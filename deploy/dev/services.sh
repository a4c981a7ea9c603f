#!/usr/bin/env bash
# Starts the real services that the tests and the demo need, installing them
# when this is a Debian/Ubuntu machine where we may (root or passwordless sudo).
# Idempotent: a service that already answers is left alone.
#
#   deploy/dev/services.sh [postgres] [mosquitto] [s3] [alertmanager] [promtool]   (default: all)
#
# Environment (defaults in brackets):
#   SM_S3_PORT [7070]  SM_S3_DIR [${TMPDIR:-/tmp}/smartmaint-s3]
#   SM_S3_ACCESS [smartmaint]  SM_S3_SECRET [smartmaint-dev-secret]
set -euo pipefail

say() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: %s\n' "$*" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
	local port=$1 what=$2 i
	for i in $(seq 1 100); do
		port_open "$port" && return 0
		sleep 0.1
	done
	die "$what did not start listening on 127.0.0.1:$port"
}

SUDO=""
if [ "$(id -u)" != 0 ]; then
	if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO=sudo; fi
fi

apt_install() {
	command -v apt-get >/dev/null || return 1
	[ "$(id -u)" = 0 ] || [ -n "$SUDO" ] || return 1
	say "installing $* with apt-get"
	$SUDO apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

start_postgres() {
	if port_open 5432; then return 0; fi
	if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
		apt_install postgresql ||
			die "PostgreSQL is not installed and I cannot install it here. Install PostgreSQL 14+ (Debian/Ubuntu: sudo apt-get install -y postgresql), start it on 127.0.0.1:5432, or point SM_TEST_POSTGRES at a server where role postgres may create databases."
	fi
	if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
		local v
		v=$(ls /etc/postgresql | sort -n | tail -1)
		say "starting PostgreSQL $v"
		$SUDO pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
	fi
	wait_port 5432 PostgreSQL
}

start_mosquitto() {
	if port_open 1883; then return 0; fi
	if ! command -v mosquitto >/dev/null && [ ! -x /usr/sbin/mosquitto ]; then
		apt_install mosquitto ||
			die "Mosquitto is not installed and I cannot install it here: sudo apt-get install -y mosquitto, or point SM_TEST_MQTT at a broker."
	fi
	local bin
	bin=$(command -v mosquitto || echo /usr/sbin/mosquitto)
	say "starting Mosquitto"
	if [ -f /etc/mosquitto/mosquitto.conf ]; then
		$SUDO "$bin" -d -c /etc/mosquitto/mosquitto.conf
	else
		$SUDO "$bin" -d -p 1883
	fi
	wait_port 1883 Mosquitto
}

start_s3() {
	local port=${SM_S3_PORT:-7070}
	if port_open "$port"; then return 0; fi
	local gobin
	gobin=$(go env GOBIN)
	[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
	if ! command -v versitygw >/dev/null && [ ! -x "$gobin/versitygw" ]; then
		say "installing versitygw (S3-compatible server; about 2 minutes the first time)"
		go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 || die "cannot install versitygw: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0 failed"
	fi
	local bin dir
	bin=$(command -v versitygw || echo "$gobin/versitygw")
	dir=${SM_S3_DIR:-${TMPDIR:-/tmp}/smartmaint-s3}
	mkdir -p "$dir"
	say "starting versitygw on 127.0.0.1:$port (data in $dir)"
	nohup "$bin" --port "127.0.0.1:$port" --access "${SM_S3_ACCESS:-smartmaint}" \
		--secret "${SM_S3_SECRET:-smartmaint-dev-secret}" --quiet posix "$dir" \
		>"$dir.log" 2>&1 &
	wait_port "$port" versitygw
}

# Alertmanager is only installed: the notification tests start their own.
install_alertmanager() {
	if command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; then return 0; fi
	apt_install prometheus-alertmanager ||
		die "Prometheus Alertmanager is needed by the notification tests: sudo apt-get install -y prometheus-alertmanager"
}

# promtool (package prometheus) checks deploy/prometheus's rules and queries.
install_promtool() {
	if command -v promtool >/dev/null; then return 0; fi
	apt_install prometheus ||
		die "promtool is needed by the deploy tests: sudo apt-get install -y prometheus"
}

what=("$@")
[ ${#what[@]} -gt 0 ] || what=(postgres mosquitto s3 alertmanager promtool)
for s in "${what[@]}"; do
	case "$s" in
	postgres) start_postgres ;;
	mosquitto) start_mosquitto ;;
	s3) start_s3 ;;
	alertmanager) install_alertmanager ;;
	promtool) install_promtool ;;
	*) die "unknown service $s (want postgres, mosquitto or s3)" ;;
	esac
done

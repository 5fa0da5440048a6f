#!/usr/bin/env bash
# Make sure the local services that spar's tests talk to are up on loopback,
# and that the build tools the Rust build needs are present.
#
#   Redis 6379, PostgreSQL 5432 (trust on loopback), MariaDB 3306 (root, empty
#   password), RabbitMQ 5672 (guest/guest), Mosquitto 1883 (anonymous),
#   NATS with JetStream 4222; cmake and protoc (build), dnsmasq (a real DNS
#   server the Kubernetes name-resolution test runs on a private port),
#   prometheus (the metrics test runs its own server scraping spar), nginx
#   (the benchmark smoke test's baseline proxy and app).
#
# A service that already accepts connections is left alone. One that is
# installed but down is started. One that is missing (a fresh Debian machine)
# is installed from Debian's packages (one `apt-get update`, then
# `apt-get install -y ...`), configured for local testing and started.
# Then every port is waited for (bounded) and the databases' logins checked.
#
# Idempotent; safe to run again at any time. Run as root (or with sudo
# available) when something has to be installed or started.
#
# Environment:
#   SERVICES_WAIT_SECONDS  how long to wait for each port (default 60)
set -euo pipefail

WAIT_SECONDS="${SERVICES_WAIT_SECONDS:-60}"
HOST=127.0.0.1

SERVICES=(redis postgresql mariadb rabbitmq mosquitto nats)
declare -A PORT=([redis]=6379 [postgresql]=5432 [mariadb]=3306 [rabbitmq]=5672 [mosquitto]=1883 [nats]=4222)
declare -A PKG=([redis]=redis-server [postgresql]=postgresql [mariadb]=mariadb-server
                [rabbitmq]=rabbitmq-server [mosquitto]=mosquitto [nats]=nats-server)
declare -A LOG=([redis]=/var/log/redis/ci.log [postgresql]=/var/log/postgresql/
                [mariadb]="none by default: run /usr/sbin/mariadbd in the foreground to see why"
                [rabbitmq]=/var/log/rabbitmq/ [mosquitto]=/var/log/mosquitto/mosquitto.log
                [nats]=/var/log/nats-server.log)
declare -A STATE=()   # up | start | install

log() { printf '%s\n' "$*"; }
warn() { printf 'services: warning: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, else through sudo.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root to run: $* (run this script as root, or install sudo)"
  fi
}

# True when something accepts TCP connections on $HOST:$1 (bash's /dev/tcp).
port_open() {
  timeout 3 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

# Wait (bounded) for a port; returns non-zero on time-out.
wait_port() {
  local port=$1 deadline=$((SECONDS + WAIT_SECONDS))
  until port_open "$port"; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 1
  done
}

# ---------------------------------------------------------------- packages

APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 \
    || die "missing packages ($*) and no apt-get here: install them by hand"
  if [ "$APT_UPDATED" -eq 0 ]; then
    log "services: apt-get update"
    as_root apt-get update -q
    APT_UPDATED=1
  fi
  log "services: apt-get install -y $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"
}

pg_version() {
  # Newest PostgreSQL with a cluster config, else newest installed server.
  local v
  # shellcheck disable=SC2012  # version directory names: plain, no spaces
  v="$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
  # shellcheck disable=SC2012
  [ -n "$v" ] || v="$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1 || true)"
  printf '%s' "$v"
}

installed() {
  case "$1" in
    redis)      [ -x /usr/bin/redis-server ] ;;
    postgresql) [ -x /usr/bin/pg_ctlcluster ] && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null ;;
    mariadb)    [ -x /usr/sbin/mariadbd ] ;;
    rabbitmq)   [ -x /usr/sbin/rabbitmq-server ] ;;
    mosquitto)  [ -x /usr/sbin/mosquitto ] ;;
    nats)       [ -x /usr/sbin/nats-server ] ;;
    *)          return 1 ;;
  esac
}

# ------------------------------------------------------ per-service starts

start_redis() {
  as_root install -d /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
}

start_postgresql() {
  local v
  v="$(pg_version)"
  [ -n "$v" ] || die "PostgreSQL is installed but no version found under /usr/lib/postgresql"
  if [ ! -d "/etc/postgresql/$v/main" ]; then
    log "services: creating PostgreSQL $v cluster 'main'"
    as_root pg_createcluster "$v" main
  fi
  as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start
}

start_mariadb() {
  if [ ! -d /var/lib/mysql/mysql ]; then
    log "services: initialising the MariaDB data directory"
    as_root mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
  fi
  as_root install -d -o mysql -g mysql -m 0755 /run/mysqld
  # --user=mysql: a stock Debian config does not set it, and mariadbd
  # refuses to run as root.
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
}

start_rabbitmq() {
  as_root rabbitmq-server -detached
}

configure_mosquitto() {
  # Mosquitto 2 without any listener only listens on localhost, anonymously;
  # make that explicit (as on the CI machines) when no listener is configured.
  local conf=/etc/mosquitto/mosquitto.conf
  if grep -Eqs '^[[:space:]]*(listener|port)[[:space:]]' "$conf" /etc/mosquitto/conf.d/*.conf; then
    return 0
  fi
  log "services: configuring Mosquitto: listener 1883 127.0.0.1, allow_anonymous true"
  if grep -Eqs '^[[:space:]]*include_dir[[:space:]]+/etc/mosquitto/conf.d' "$conf"; then
    printf 'listener 1883 127.0.0.1\nallow_anonymous true\n' \
      | as_root tee /etc/mosquitto/conf.d/spar-local.conf >/dev/null
  else
    printf '\n# added by spar scripts/services.sh\nlistener 1883 127.0.0.1\nallow_anonymous true\n' \
      | as_root tee -a "$conf" >/dev/null
  fi
}

start_mosquitto() {
  configure_mosquitto
  if id mosquitto >/dev/null 2>&1; then
    as_root install -d -o mosquitto -g mosquitto /run/mosquitto /var/log/mosquitto
  fi
  as_root mosquitto -d -c /etc/mosquitto/mosquitto.conf
}

start_nats() {
  as_root install -d /var/lib/nats-server
  as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- \
    -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log
}

# ------------------------------------------- database logins for the tests

pg_query() {
  PGCONNECT_TIMEOUT=5 psql -h "$HOST" -p 5432 -U postgres -d postgres -w -X -q -A -t -c "$1"
}

# Make loopback connections trusted (as on the CI machines): prepend trust
# lines to pg_hba.conf once, then reload.
configure_postgresql_trust() {
  local v hba tmp marker='# spar scripts/services.sh: trust loopback for local testing'
  v="$(pg_version)"
  hba="/etc/postgresql/$v/main/pg_hba.conf"
  [ -f "$hba" ] || die "PostgreSQL: $hba not found"
  if grep -qF "$marker" "$hba"; then
    return 0
  fi
  log "services: PostgreSQL: setting 'trust' for local and 127.0.0.1/::1 in $hba, reloading"
  tmp="$(mktemp)"
  {
    printf '%s\n' "$marker"
    printf 'local   all  all                 trust\n'
    printf 'host    all  all  127.0.0.1/32   trust\n'
    printf 'host    all  all  ::1/128        trust\n\n'
    as_root cat "$hba"
  } >"$tmp"
  # shellcheck disable=SC2016  # $1/$2 are expanded by the inner sh
  as_root sh -c 'cat "$1" > "$2"' sh "$tmp" "$hba"   # keeps owner and mode
  rm -f "$tmp"
  as_root pg_ctlcluster --skip-systemctl-redirect "$v" main reload
}

check_postgresql() {
  local deadline=$((SECONDS + 30)) configured=0 out
  until out="$(pg_query 'select 1' 2>&1)"; do
    # (grep on a captured string: with pipefail, `psql | grep -q` would take
    # psql's failure as the pipeline's status.)
    if [ "$configured" -eq 0 ] && grep -qiE 'password|authentication' <<<"$out"; then
      configure_postgresql_trust
      configured=1
      sleep 1
      continue
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf '%s\n' "$out" >&2
      die "PostgreSQL: user postgres cannot log in over $HOST:5432 without a password"
    fi
    sleep 1
  done
  # Same roles/databases as the CI machines: role root, database test.
  if [ "$(pg_query "select 1 from pg_roles where rolname = 'root'")" != 1 ]; then
    pg_query 'create role root superuser login' >/dev/null
  fi
  if [ "$(pg_query "select 1 from pg_database where datname = 'test'")" != 1 ]; then
    pg_query 'create database test' >/dev/null
  fi
}

maria_tcp() { mariadb -uroot -h "$HOST" -P 3306 --protocol=TCP --connect-timeout=5 -N -B -e "$1"; }

# Let root log in with an empty password over TCP (fresh Debian installs only
# allow unix_socket for root). Done over the socket, as unix user root.
configure_mariadb_root() {
  log "services: MariaDB: allowing root with an empty password on localhost/127.0.0.1/::1"
  as_root mariadb -uroot --protocol=SOCKET -e "
    ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket;
    CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
    CREATE USER IF NOT EXISTS 'root'@'::1' IDENTIFIED BY '';
    GRANT ALL PRIVILEGES ON *.* TO 'root'@'::1' WITH GRANT OPTION;
    FLUSH PRIVILEGES;"
}

check_mariadb() {
  local deadline=$((SECONDS + 30)) configured=0 out
  until out="$(maria_tcp 'select 1' 2>&1)"; do
    if [ "$configured" -eq 0 ] && grep -q 'Access denied' <<<"$out"; then
      configure_mariadb_root
      configured=1
      continue
    fi
    if [ "$SECONDS" -ge "$deadline" ]; then
      printf '%s\n' "$out" >&2
      die "MariaDB: root with an empty password cannot log in over $HOST:3306"
    fi
    sleep 1
  done
  maria_tcp 'CREATE DATABASE IF NOT EXISTS test' >/dev/null
}

# ------------------------------------------------------------------- main

# 1. What is up, what must be started, what must be installed.
missing_pkgs=()
for s in "${SERVICES[@]}"; do
  if port_open "${PORT[$s]}"; then
    STATE[$s]=up
  elif installed "$s"; then
    STATE[$s]=start
  else
    STATE[$s]=install
    missing_pkgs+=("${PKG[$s]}")
  fi
done

tool_msgs=()
for pair in cmake:cmake protoc:protobuf-compiler dnsmasq:dnsmasq prometheus:prometheus nginx:nginx; do
  tool=${pair%%:*} pkg=${pair#*:}
  if command -v "$tool" >/dev/null 2>&1; then
    tool_msgs+=("$tool: present")
  else
    missing_pkgs+=("$pkg")
    tool_msgs+=("$tool: installed ($pkg)")
  fi
done

# 2. One apt-get run for everything missing.
if [ "${#missing_pkgs[@]}" -gt 0 ]; then
  apt_install "${missing_pkgs[@]}"
fi
for pair in cmake:cmake protoc:protobuf-compiler dnsmasq:dnsmasq prometheus:prometheus nginx:nginx; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || die "${pair%%:*} still missing after installing ${pair#*:}"
done

# 3. Start whatever is down (a package's own postinst may already have
#    started it: then leave it be). Start all first, wait after, so slow
#    starters (RabbitMQ) overlap.
for s in "${SERVICES[@]}"; do
  [ "${STATE[$s]}" != up ] || continue
  installed "$s" || die "$s: package ${PKG[$s]} installed but its binary is missing"
  if port_open "${PORT[$s]}"; then
    continue
  fi
  log "services: starting $s"
  "start_$s" || warn "the start command for $s exited non-zero; waiting for its port anyway"
done

# 4. Wait for every port, then check the databases' logins.
failed=()
for s in "${SERVICES[@]}"; do
  [ "${STATE[$s]}" != up ] || continue
  if ! wait_port "${PORT[$s]}"; then
    printf 'services: ERROR: %s did not accept connections on %s:%s within %ss (log: %s)\n' \
      "$s" "$HOST" "${PORT[$s]}" "$WAIT_SECONDS" "${LOG[$s]}" >&2
    failed+=("$s")
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  die "not up: ${failed[*]}"
fi

check_postgresql
check_mariadb

# 5. One line per service.
for s in "${SERVICES[@]}"; do
  case "${STATE[$s]}" in
    up)      what="up" ;;
    start)   what="started" ;;
    install) what="installed+started" ;;
  esac
  printf '%-11s %-18s %s:%s\n' "$s" "$what" "$HOST" "${PORT[$s]}"
done
for m in "${tool_msgs[@]}"; do
  printf '%-11s %s\n' "${m%%:*}" "${m#*: }"
done

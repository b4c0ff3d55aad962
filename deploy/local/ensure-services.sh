#!/usr/bin/env bash
# Make sure RabbitMQ (with the management plugin) and PostgreSQL run on this machine.
# Installs them from Debian's packages when they are missing and we are root; otherwise
# says what to do. Idempotent: safe to run before every `make` target.
set -euo pipefail

say() { printf 'lienthong setup: %s\n' "$*" >&2; }

need_install=()
# xmlsec1: the independent XML-DSig implementation the signature tests check against;
# chromium + chromium-driver: the dashboard's browser test (npm: its axe-core); prometheus:
# promtool for the rules; patroni + etcd: the local cluster's PostgreSQL failover
# (deploy/cluster/cluster.sh, which `make test` starts for the cluster tests).
for tool in xmlsec1:xmlsec1 chromium:chromium chromedriver:chromium-driver promtool:prometheus npm:npm \
    kubectl:kubectl systemd-analyze:systemd patroni:patroni etcd:etcd-server; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || need_install+=("${tool##*:}")
done
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/sbin/rabbitmq-server ] || need_install+=(rabbitmq-server)
ls /etc/postgresql >/dev/null 2>&1 || need_install+=(postgresql)
if [ ${#need_install[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${need_install[*]} from Debian's packages"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_install[@]}" >/dev/null
  else
    say "missing: ${need_install[*]}."
    say "install them (Debian/Ubuntu: sudo apt-get install ${need_install[*]}),"
    say "or point LIENTHONG_AMQP_URL / LIENTHONG_DATABASE_URL at running servers."
    exit 1
  fi
fi
export PATH="$PATH:/usr/sbin:/usr/lib/rabbitmq/bin"

# RabbitMQ. Every quorum queue reserves file handles (~3); the Debian default of 1024 open
# files leaves RabbitMQ 927 handles, and past that new connections hang. Start it with the
# hard limit instead (su resets limits, so raise them inside the rabbitmq user's shell).
# `rabbitmq-server -detached` returns before the Erlang node exists, and `await_startup`
# fails at once while there is no node to ask: poll until the node answers or time runs out.
wait_rabbitmq() {
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1 && return 0
    sleep 2
  done
  return 1
}
start_rabbitmq() {
  if [ "$(id -u)" = 0 ] && id rabbitmq >/dev/null 2>&1 && [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then
    (cd /var/lib/rabbitmq && su rabbitmq -s /bin/sh -c \
      'ulimit -n $(ulimit -Hn); /usr/lib/rabbitmq/bin/rabbitmq-server -detached') >/dev/null 2>&1 \
      || true
  else
    rabbitmq-server -detached >/dev/null 2>&1 || true
  fi
  wait_rabbitmq 180 && return 0
  say "RabbitMQ did not start within 3 minutes; the end of its log:"
  tail -n 20 /var/log/rabbitmq/*.log >&2 2>/dev/null || true
  exit 1
}
stop_rabbitmq() {
  rabbitmqctl -q stop >/dev/null 2>&1 || true
  # wait until the node is gone, so the new one can take its name and ports
  for _ in $(seq 1 60); do
    pgrep -u rabbitmq -f beam.smp >/dev/null 2>&1 || return 0
    sleep 1
  done
  pkill -9 -u rabbitmq -f beam.smp >/dev/null 2>&1 || true
  sleep 1
}
if ! rabbitmqctl -q status >/dev/null 2>&1; then
  if rabbitmqctl -q ping >/dev/null 2>&1; then
    say "the RabbitMQ node runs but its application is stopped: starting it"
    rabbitmqctl -q start_app >/dev/null 2>&1 || true
    wait_rabbitmq 120 || { say "RabbitMQ's application did not start"; exit 1; }
  elif pgrep -u rabbitmq -f beam.smp >/dev/null 2>&1; then
    say "RabbitMQ is running but does not answer yet: waiting for it"
    if ! wait_rabbitmq 60; then
      say "RabbitMQ does not answer: restarting it"
      stop_rabbitmq
      start_rabbitmq
    fi
  else
    say "starting RabbitMQ"
    start_rabbitmq
  fi
fi
handles=$(rabbitmqctl -q eval 'file_handle_cache:get_limit().' 2>/dev/null | tr -dc '0-9' || true)
if [ -n "$handles" ] && [ "$handles" -lt 4000 ] && [ "$(id -u)" = 0 ]; then
  say "RabbitMQ runs with only ${handles:-?} file handles: restarting it with a higher limit"
  stop_rabbitmq
  start_rabbitmq
fi
if ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_management; then
  say "enabling the RabbitMQ management plugin"
  rabbitmq-plugins enable rabbitmq_management >/dev/null
fi
for _ in $(seq 1 60); do
  curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS -u guest:guest http://127.0.0.1:15672/api/overview >/dev/null 2>&1 \
  || { say "the RabbitMQ management API does not answer on 15672"; exit 1; }
# RabbitMQ's own Prometheus endpoint (15692): the hub alert rules read lt.router.in's
# consumers and depth and the broker's alarms from it (deploy/prometheus)
if ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_prometheus; then
  say "enabling the RabbitMQ Prometheus plugin"
  rabbitmq-plugins enable rabbitmq_prometheus >/dev/null
fi
for _ in $(seq 1 30); do
  curl -fsS http://127.0.0.1:15692/metrics >/dev/null 2>&1 && break
  sleep 1
done
curl -fsS http://127.0.0.1:15692/metrics >/dev/null 2>&1 \
  || { say "RabbitMQ's Prometheus endpoint does not answer on 15692"; exit 1; }

# The broker's maximum message size: the hub's package limit plus 1 MiB (router/settings.py
# MESSAGE_SIZE_MARGIN), so a package just over the limit still reaches a router and gets a
# PACKAGE_TOO_LARGE receipt, while anything larger is refused by the broker before it is
# stored (RabbitMQ's default is 128 MiB). RabbitMQ 3.10 reads rabbit.max_message_size when a
# channel opens, so setting it at runtime applies to every new channel; it lasts until the
# node restarts, and this script sets it again on every run. Production sets it in
# rabbitmq.conf (`max_message_size = 32505856`), which survives restarts.
max_message=$(( ${LIENTHONG_MAX_PACKAGE_BYTES:-31457280} + 1048576 ))
current=$(rabbitmqctl -q eval 'application:get_env(rabbit, max_message_size).' 2>/dev/null \
  | tr -dc '0-9' || true)
if [ "$current" != "$max_message" ]; then
  if rabbitmqctl -q eval "application:set_env(rabbit, max_message_size, $max_message)." \
      >/dev/null 2>&1; then
    say "RabbitMQ max_message_size set to $max_message bytes (was ${current:-unknown})"
  else
    say "could not set RabbitMQ's max_message_size (set max_message_size = $max_message in rabbitmq.conf)"
  fi
fi

# PostgreSQL
if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  ver=$(ls /etc/postgresql | sort -V | tail -n 1)
  say "starting PostgreSQL $ver"
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null \
    || pg_ctlcluster "$ver" main start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
pg_isready -q -h 127.0.0.1 -p 5432 || { say "PostgreSQL does not answer on 5432"; exit 1; }
say "RabbitMQ (5672, management 15672, Prometheus 15692) and PostgreSQL (5432) are up"

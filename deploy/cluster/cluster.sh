#!/usr/bin/env bash
# A real lienthong cluster on ONE machine, for tests and for trying failover by hand:
#   * RabbitMQ: 3 clustered nodes (Debian's rabbitmq-server), management plugin on each;
#   * PostgreSQL 15: a primary and a SYNCHRONOUS standby managed by Patroni, with etcd as
#     Patroni's consensus store (automatic failover).
# Everything lives under $LIENTHONG_CLUSTER_DIR (default /tmp/lienthong-cluster) and runs as
# plain processes: the default RabbitMQ (5672) and PostgreSQL (5432) are never touched.
#
#   cluster.sh up                  start (or finish starting) everything; idempotent
#   cluster.sh down                stop everything and remove the folder
#   cluster.sh status              what runs, who leads
#   cluster.sh running             exit 0 when the cluster is up (RabbitMQ node 1 answers)
#   cluster.sh env                 the LIENTHONG_* variables that point at the cluster
#   cluster.sh rabbit-kill N       kill -9 RabbitMQ node N (1..3)
#   cluster.sh rabbit-stop N       stop RabbitMQ node N cleanly
#   cluster.sh rabbit-start N      (re)start RabbitMQ node N; it rejoins by itself
#   cluster.sh rabbit-check-conf F validate rabbitmq.conf F against RabbitMQ's own schemas
#   cluster.sh pg-primary          the Patroni member name of the current primary
#   cluster.sh pg-kill NAME        kill -9 Patroni and PostgreSQL of member NAME (pg1|pg2)
#   cluster.sh pg-start NAME       (re)start member NAME; it comes back as a standby
#   cluster.sh pg-wait-sync [S]    wait (S seconds) for a primary with a synchronous standby
#
# Ports (override with the variables below): RabbitMQ AMQP 5681-5683, management
# 15681-15683, Erlang distribution 25681-25683; PostgreSQL 5441/5442; Patroni REST
# 8441/8442; etcd client 2479, peer 2480.
set -euo pipefail

DIR=${LIENTHONG_CLUSTER_DIR:-/tmp/lienthong-cluster}
AMQP_BASE=${LIENTHONG_CLUSTER_AMQP_BASE:-5680}      # node N listens on BASE+N
MGMT_BASE=${LIENTHONG_CLUSTER_MGMT_BASE:-15680}
DIST_BASE=${LIENTHONG_CLUSTER_DIST_BASE:-25680}
PG_PORTS=(5441 5442)
PATRONI_PORTS=(8441 8442)
ETCD_CLIENT=${LIENTHONG_CLUSTER_ETCD_PORT:-2479}
ETCD_PEER=$((ETCD_CLIENT + 1))
PG_BIN=${LIENTHONG_CLUSTER_PG_BIN:-/usr/lib/postgresql/15/bin}
RMQ_BIN=/usr/lib/rabbitmq/bin
SCOPE=lienthong
COOKIE_HOME="$DIR/home"

say() { printf 'lienthong cluster: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

node_name() { echo "lt-rabbit-$1@localhost"; }

# ---------------------------------------------------------------------------------------
# prerequisites
ensure_packages() {
  local missing=()
  [ -x "$RMQ_BIN/rabbitmq-server" ] || missing+=(rabbitmq-server)
  [ -x "$PG_BIN/postgres" ] || missing+=(postgresql-15)
  command -v patroni >/dev/null 2>&1 || missing+=(patroni)
  command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} from Debian's packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
           "${missing[@]}" >/dev/null; } \
      || die "could not install ${missing[*]}"
  else
    die "missing ${missing[*]}: install them (sudo apt-get install ${missing[*]})"
  fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  while [ $SECONDS -lt $deadline ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 1
  done
  return 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# ---------------------------------------------------------------------------------------
# RabbitMQ
rmq_env() {  # the environment of node N, for the server and for its CLI tools
  local n=$1
  echo "HOME=$COOKIE_HOME" \
       "RABBITMQ_CONF_ENV_FILE=$DIR/rabbit/rabbitmq-env.conf" \
       "RABBITMQ_NODENAME=$(node_name "$n")" \
       "RABBITMQ_NODE_IP_ADDRESS=127.0.0.1" \
       "RABBITMQ_NODE_PORT=$((AMQP_BASE + n))" \
       "RABBITMQ_DIST_PORT=$((DIST_BASE + n))" \
       "RABBITMQ_CONFIG_FILE=$DIR/rabbit/$n/rabbitmq.conf" \
       "RABBITMQ_ENABLED_PLUGINS_FILE=$DIR/rabbit/enabled_plugins" \
       "RABBITMQ_MNESIA_BASE=$DIR/rabbit/$n/mnesia" \
       "RABBITMQ_LOG_BASE=$DIR/rabbit/$n/log" \
       "RABBITMQ_PID_FILE=$DIR/rabbit/$n/pid" \
       "RABBITMQ_ADVANCED_CONFIG_FILE=$DIR/rabbit/$n/advanced.config"
}

ctl() {  # ctl N rabbitmqctl-args...
  local n=$1; shift
  env $(rmq_env "$n") "$RMQ_BIN/rabbitmqctl" -n "$(node_name "$n")" "$@"
}

rmq_configure() {
  mkdir -p "$COOKIE_HOME" "$DIR/rabbit"
  if [ ! -s "$COOKIE_HOME/.erlang.cookie" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$COOKIE_HOME/.erlang.cookie"
  fi
  chmod 400 "$COOKIE_HOME/.erlang.cookie"
  : > "$DIR/rabbit/rabbitmq-env.conf"   # never read the default node's /etc/rabbitmq env
  echo '[rabbitmq_management].' > "$DIR/rabbit/enabled_plugins"
  local n
  for n in 1 2 3; do
    mkdir -p "$DIR/rabbit/$n/mnesia" "$DIR/rabbit/$n/log"
    cat > "$DIR/rabbit/$n/rabbitmq.conf" <<EOF
listeners.tcp.1 = 127.0.0.1:$((AMQP_BASE + n))
management.tcp.ip = 127.0.0.1
management.tcp.port = $((MGMT_BASE + n))
loopback_users = none
cluster_partition_handling = pause_minority
# new quorum queues spread their leaders over the nodes (not all on the declaring one)
queue_leader_locator = balanced
# net_ticktime stays at its default (60 s): a killed node's peers see its connections drop
# at once anyway, and a shorter tick makes the two survivors, starved of CPU on one machine,
# take each other for lost: with pause_minority both then pause and the cluster stops.
EOF
    echo '[].' > "$DIR/rabbit/$n/advanced.config"
  done
}

rmq_running() { ctl "$1" -q await_startup --timeout 1 >/dev/null 2>&1; }

rmq_launch() {  # start node N in the background unless it runs already
  local n=$1
  if rmq_running "$n"; then return 0; fi
  if pid_alive "$DIR/rabbit/$n/pid"; then
    say "RabbitMQ node $n runs but does not answer yet: waiting"
  else
    port_free $((AMQP_BASE + n)) || die "port $((AMQP_BASE + n)) is taken by another program"
    port_free $((DIST_BASE + n)) || die "port $((DIST_BASE + n)) is taken by another program"
    say "starting RabbitMQ node $n ($(node_name "$n"), AMQP $((AMQP_BASE + n)))"
    # every quorum queue holds file handles: run with the hard limit of open files
    (ulimit -n "$(ulimit -Hn)"; cd "$DIR/rabbit/$n" &&
      env $(rmq_env "$n") \
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
        ERL_EPMD_ADDRESS=127.0.0.1 \
        "$RMQ_BIN/rabbitmq-server" -detached >>"$DIR/rabbit/$n/log/start.out" 2>&1) || true
  fi
}

rmq_wait() {  # wait until node N answers
  local n=$1 deadline=$((SECONDS + 180))
  until ctl "$n" -q await_startup --timeout 5 >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$DIR/rabbit/$n/log/"*.log >&2 || true;
                                    die "RabbitMQ node $n did not start in 3 minutes"; }
    sleep 1
  done
}

rmq_start() { rmq_launch "$1"; rmq_wait "$1"; }

rmq_join() {
  local n=$1 seed
  seed=$(node_name 1)
  if ctl "$n" -q cluster_status --formatter json 2>/dev/null | grep -q "\"$seed\""; then
    return 0
  fi
  say "joining RabbitMQ node $n to $seed"
  ctl "$n" -q stop_app >/dev/null 2>&1
  ctl "$n" -q reset >/dev/null 2>&1
  ctl "$n" -q join_cluster "$seed" >/dev/null 2>&1 || die "node $n could not join $seed"
  ctl "$n" -q start_app >/dev/null 2>&1
}

rmq_up() {
  rmq_configure
  local n
  for n in 1 2 3; do rmq_launch "$n"; done   # the three boot in parallel
  for n in 1 2 3; do rmq_wait "$n"; done
  for n in 2 3; do rmq_join "$n"; done
  local running
  running=$(ctl 1 -q eval 'length(rabbit_nodes:all_running()).' 2>/dev/null | tr -dc 0-9)
  [ "${running:-0}" = 3 ] || die "the RabbitMQ cluster has ${running:-0} running nodes, not 3"
  for n in 1 2 3; do
    wait_for 60 "management $n" curl -fsS -u guest:guest \
      "http://127.0.0.1:$((MGMT_BASE + n))/api/overview" \
      || die "the management API of node $n does not answer on $((MGMT_BASE + n))"
  done
}

rmq_kill() {
  local n=$1 pid
  pid_alive "$DIR/rabbit/$n/pid" || { say "RabbitMQ node $n is not running"; return 0; }
  pid=$(cat "$DIR/rabbit/$n/pid")
  say "kill -9 RabbitMQ node $n (pid $pid)"
  kill -9 "$pid"
  # the epmd registration and the port go away with the process
  wait_for 30 "node $n gone" bash -c "! kill -0 $pid" || die "node $n survived kill -9"
}

rmq_stop() {
  local n=$1
  say "stopping RabbitMQ node $n"
  ctl "$n" -q stop >/dev/null 2>&1 || true
  if pid_alive "$DIR/rabbit/$n/pid"; then
    wait_for 60 "node $n stopped" bash -c "! kill -0 $(cat "$DIR/rabbit/$n/pid")" || rmq_kill "$n"
  fi
}

# ---------------------------------------------------------------------------------------
# etcd + Patroni + PostgreSQL
etcd_up() {
  mkdir -p "$DIR/etcd"
  if pid_alive "$DIR/etcd/pid"; then return 0; fi
  port_free "$ETCD_CLIENT" || die "port $ETCD_CLIENT (etcd) is taken by another program"
  say "starting etcd (client 127.0.0.1:$ETCD_CLIENT)"
  setsid etcd --name lt-etcd --data-dir "$DIR/etcd/data" \
    --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "lt-etcd=http://127.0.0.1:$ETCD_PEER" \
    --enable-v2=true >>"$DIR/etcd/etcd.log" 2>&1 < /dev/null &
  echo $! > "$DIR/etcd/pid"
  wait_for 30 etcd curl -fsS "http://127.0.0.1:$ETCD_CLIENT/health" \
    || { tail -n 20 "$DIR/etcd/etcd.log" >&2; die "etcd did not start"; }
}

patroni_config() {  # patroni_config INDEX (0|1)
  local i=$1 name="pg$(( $1 + 1 ))"
  mkdir -p "$DIR/pg/$name"
  cat > "$DIR/pg/$name.yml" <<EOF
scope: $SCOPE
name: $name
log:
  dir: $DIR/pg/$name
  level: INFO
restapi:
  listen: 127.0.0.1:${PATRONI_PORTS[$i]}
  connect_address: 127.0.0.1:${PATRONI_PORTS[$i]}
etcd3:
  hosts: 127.0.0.1:$ETCD_CLIENT
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 2
    retry_timeout: 4
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        max_connections: 200
        synchronous_commit: "on"
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
postgresql:
  listen: 127.0.0.1:${PG_PORTS[$i]}
  connect_address: 127.0.0.1:${PG_PORTS[$i]}
  data_dir: $DIR/pg/$name/data
  bin_dir: $PG_BIN
  pgpass: $DIR/pg/$name/pgpass
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
  parameters:
    unix_socket_directories: $DIR/pg/$name
EOF
  chown -R postgres:postgres "$DIR/pg"
}

patroni_start() {  # patroni_start NAME
  local name=$1 i
  i=$(( ${name#pg} - 1 ))
  if pid_alive "$DIR/pg/$name.pid"; then return 0; fi
  port_free "${PG_PORTS[$i]}" || die "port ${PG_PORTS[$i]} is taken by another program"
  port_free "${PATRONI_PORTS[$i]}" || die "port ${PATRONI_PORTS[$i]} is taken by another program"
  patroni_config "$i"
  say "starting Patroni $name (PostgreSQL 127.0.0.1:${PG_PORTS[$i]})"
  # PostgreSQL refuses to run as root: Patroni (and so postgres) runs as the postgres user
  setsid runuser -u postgres -- patroni "$DIR/pg/$name.yml" \
    >>"$DIR/pg/$name.out" 2>&1 < /dev/null &
  echo $! > "$DIR/pg/$name.pid"
}

pg_role() {  # pg_role NAME -> primary|replica|... (from Patroni's REST API)
  local i=$(( ${1#pg} - 1 ))
  curl -fsS "http://127.0.0.1:${PATRONI_PORTS[$i]}/patroni" 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin).get("role",""))' 2>/dev/null
}

pg_primary() {
  local name
  for name in pg1 pg2; do
    [ "$(pg_role "$name")" = primary ] || [ "$(pg_role "$name")" = master ] && { echo "$name"; return 0; }
  done
  return 1
}

pg_sync_standby() {  # true when there is a leader and a synchronous standby, both running
  local port
  for port in "${PATRONI_PORTS[@]}"; do
    curl -fsS "http://127.0.0.1:$port/cluster" 2>/dev/null \
      | python3 -c 'import json,sys; m=json.load(sys.stdin)["members"]
ok = lambda r: any(x["role"] == r and x["state"] in ("streaming", "running") for x in m)
sys.exit(0 if ok("leader") and ok("sync_standby") else 1)' && return 0
  done
  return 1
}

pg_up() {
  etcd_up
  mkdir -p "$DIR/pg"
  patroni_start pg1
  wait_for 90 "primary" pg_primary || { tail -n 30 "$DIR/pg/pg1.out" >&2; die "no PostgreSQL primary in 90 s"; }
  patroni_start pg2
  wait_for 120 "sync standby" pg_sync_standby \
    || { tail -n 30 "$DIR/pg/pg2.out" >&2; die "the standby did not become synchronous in 120 s"; }
}

pg_kill() {
  local name=$1 ppid
  say "kill -9 Patroni and PostgreSQL of $name"
  if pid_alive "$DIR/pg/$name.pid"; then
    ppid=$(cat "$DIR/pg/$name.pid")
    pkill -9 -P "$ppid" >/dev/null 2>&1 || true   # runuser's child: patroni
    kill -9 "$ppid" 2>/dev/null || true
  fi
  local pm="$DIR/pg/$name/data/postmaster.pid"
  if [ -f "$pm" ]; then kill -9 "$(head -n 1 "$pm")" 2>/dev/null || true; fi
  rm -f "$DIR/pg/$name.pid"
}

# ---------------------------------------------------------------------------------------
down() {
  [ -d "$DIR" ] || { say "nothing to remove ($DIR does not exist)"; return 0; }
  local n name
  for n in 1 2 3; do
    ctl "$n" -q stop >/dev/null 2>&1 || true
    pid_alive "$DIR/rabbit/$n/pid" && kill -9 "$(cat "$DIR/rabbit/$n/pid")" 2>/dev/null || true
  done
  for name in pg1 pg2; do pg_kill "$name" >/dev/null 2>&1 || true; done
  pid_alive "$DIR/etcd/pid" && kill "$(cat "$DIR/etcd/pid")" 2>/dev/null || true
  # nothing of ours may survive: Erlang processes run with HOME in our folder (a node may
  # still be shutting down after `stop`); wait for them, then kill what is left, by pid
  local pids
  wait_for 30 "nodes gone" bash -c "! pgrep -f -- '-home $COOKIE_HOME' >/dev/null" || true
  pids=$(pgrep -f -- "-home $COOKIE_HOME" || true)
  [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
  for n in 1 2 3; do wait_for 30 port port_free $((AMQP_BASE + n)) || true; done
  wait_for 10 port port_free "$ETCD_CLIENT" || true
  rm -rf "$DIR"
  say "removed $DIR"
}

env_out() {
  local hosts="127.0.0.1:$((AMQP_BASE + 1)),127.0.0.1:$((AMQP_BASE + 2)),127.0.0.1:$((AMQP_BASE + 3))"
  local mgmt="127.0.0.1:$((MGMT_BASE + 1)),127.0.0.1:$((MGMT_BASE + 2)),127.0.0.1:$((MGMT_BASE + 3))"
  echo "LIENTHONG_AMQP_URL=amqp://guest:guest@$hosts/lienthong"
  echo "LIENTHONG_MANAGEMENT_URL=http://guest:guest@$mgmt"
  echo "LIENTHONG_DATABASE_URL=postgresql://postgres@127.0.0.1:${PG_PORTS[0]},127.0.0.1:${PG_PORTS[1]}/lienthong?target_session_attrs=read-write"
}

status() {
  local n
  for n in 1 2 3; do
    if rmq_running "$n"; then echo "rabbit $n: running ($(node_name "$n"))"; else echo "rabbit $n: down"; fi
  done
  for n in pg1 pg2; do echo "postgres $n: $(pg_role "$n" || true)"; done
  pid_alive "$DIR/etcd/pid" && echo "etcd: running" || echo "etcd: down"
}

cmd=${1:-}
case "$cmd" in
  up)
    [ "$(id -u)" = 0 ] || die "run as root (PostgreSQL runs as the postgres user, RabbitMQ as root)"
    start=$SECONDS
    ensure_packages
    mkdir -p "$DIR"; chmod 755 "$DIR"
    rmq_up
    pg_up
    say "up in $((SECONDS - start)) s; point lienthong at it with:"
    env_out >&2
    ;;
  down) down ;;
  status) status ;;
  running) [ -d "$DIR" ] && rmq_running 1 ;;
  env) env_out ;;
  rabbit-kill) rmq_kill "${2:?node 1..3}" ;;
  rabbit-stop) rmq_stop "${2:?node 1..3}" ;;
  rabbit-start) rmq_start "${2:?node 1..3}" ;;
  rabbit-check-conf)  # validate a rabbitmq.conf against node 1's schemas (cuttlefish)
    conf=$(readlink -f "${2:?a rabbitmq.conf}")
    out=$(ctl 1 -q eval "
      Conf = cuttlefish_conf:files([\"$conf\"]),
      Schema = cuttlefish_schema:files(filelib:wildcard(
        code:lib_dir(rabbit) ++ \"/../*/priv/schema/*.schema\")),
      case cuttlefish_generator:map(Schema, Conf) of
        {error, Phase, Errors} -> {error, Phase, Errors}; L when is_list(L) -> ok end." 2>&1)
    [ "$(printf '%s' "$out" | tail -n 1)" = ok ] || { printf '%s\n' "$out" >&2; exit 1; } ;;
  pg-primary) pg_primary ;;
  pg-kill) pg_kill "${2:?pg1|pg2}" ;;
  pg-start) patroni_start "${2:?pg1|pg2}" ;;
  pg-wait-sync)
    wait_for "${2:-120}" "sync standby" pg_sync_standby \
      || die "no primary with a synchronous standby within ${2:-120} s" ;;
  *) sed -n '2,20p' "$0" >&2; exit 2 ;;
esac

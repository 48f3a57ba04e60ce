#!/usr/bin/env bash
# PgBouncer connection storm, side by side in one run, on loopback only.
#
# A throw-away PostgreSQL (max_connections 100, scram-sha-256) and a PgBouncer set up as the
# pgbouncer role sets them up (transaction pooling, default_pool_size 20, min_pool_size 5,
# reserve_pool_size 5, max_db_connections 25, auth_query through a SECURITY DEFINER function,
# PgBouncer on PostgreSQL's host reaching it through its unix socket) are started on free loopback
# ports; the clients connect over TCP to either; then pgbench runs, each for DURATION seconds:
#   1. 500 clients through PgBouncer   vs  500 clients directly to PostgreSQL:
#      - connection errors: 500 psql clients connect at once and each stays connected 2 s
#        (a query, 2 s idle, a query); every client that cannot connect or query is counted;
#      - pgbench with 500 clients: its TPS, or how it ended (pgbench gives up on the whole run at
#        the first client that cannot connect, so it cannot count refused clients itself);
#   2.  50 clients through PgBouncer   vs   50 clients directly: pgbench TPS, ROUNDS (3) runs of each
#      in turn, and the ratio of their medians
# PgBouncer's max_client_conn is 600 here (the role's default, 200, is for the one-VPS app;
# set pgbouncer_max_client_conn above the clients you expect).
#
#   benchmarks/pgbouncer_storm.sh            (DURATION=10 SCALE=10 ROUNDS=3 by default)
# Needs: PostgreSQL server binaries (initdb, pg_ctl, pgbench), pgbouncer. Not part of `make test`.
set -euo pipefail

DURATION="${DURATION:-10}"
SCALE="${SCALE:-10}"
STORM_CLIENTS="${STORM_CLIENTS:-500}"
CLIENTS="${CLIENTS:-50}"
THREADS="${THREADS:-4}"
ROUNDS="${ROUNDS:-3}"

BIN="${PG_BINDIR:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)}"
PGBOUNCER="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
for exe in "$BIN/initdb" "$BIN/pg_ctl" "$BIN/pgbench" "$BIN/psql" "$PGBOUNCER"; do
  [ -x "$exe" ] || { echo "missing $exe (install postgresql and pgbouncer, or set PG_BINDIR)" >&2; exit 2; }
done

# PostgreSQL refuses to run as root: use the postgres account then.
if [ "$(id -u)" = 0 ]; then AS=(runuser -u "${BENCH_OSUSER:-postgres}" --); else AS=(); fi
WORK="$(mktemp -d /tmp/pgbouncer-storm.XXXXXX)"
chmod 0755 "$WORK"
[ "$(id -u)" = 0 ] && chown "${BENCH_OSUSER:-postgres}" "$WORK"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PGPORT="$(free_port)"
BPORT="$(free_port)"
PASSWORD="bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
AUTH_PASSWORD="auth-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"

BOUNCER_PID=""
cleanup() {
  [ -n "$BOUNCER_PID" ] && kill "$BOUNCER_PID" 2>/dev/null || true
  "${AS[@]}" "$BIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

echo "$PASSWORD" > "$WORK/pw" && chmod 0600 "$WORK/pw"
[ "$(id -u)" = 0 ] && chown "${BENCH_OSUSER:-postgres}" "$WORK/pw"
"${AS[@]}" "$BIN/initdb" -D "$WORK/data" -U postgres --auth=scram-sha-256 --pwfile="$WORK/pw" \
  --data-checksums >/dev/null
cat >> "$WORK/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$WORK'
max_connections = 100
superuser_reserved_connections = 3
password_encryption = 'scram-sha-256'
shared_buffers = '256MB'
fsync = on
CONF
"${AS[@]}" "$BIN/pg_ctl" -D "$WORK/data" -l "$WORK/postgres.log" -w start >/dev/null

export PGHOST=127.0.0.1 PGUSER=postgres PGPASSWORD="$PASSWORD" PGCONNECT_TIMEOUT=10
psql() { "$BIN/psql" -XAtq -v ON_ERROR_STOP=1 -p "$PGPORT" "$@"; }
psql -d postgres -c "CREATE ROLE bench LOGIN PASSWORD '$PASSWORD'" \
  -c "CREATE ROLE pgbouncer_auth LOGIN PASSWORD '$AUTH_PASSWORD'" -c "CREATE DATABASE bench OWNER bench"
# The function the pgbouncer role creates (roles/pgbouncer/tasks/configure.yml).
psql -d bench <<'SQL'
CREATE SCHEMA pgbouncer AUTHORIZATION postgres;
REVOKE ALL ON SCHEMA pgbouncer FROM PUBLIC;
GRANT USAGE ON SCHEMA pgbouncer TO pgbouncer_auth;
CREATE FUNCTION pgbouncer.get_auth(p_usename text) RETURNS TABLE(usename text, passwd text)
  LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog
  AS $$SELECT rolname::text, rolpassword::text FROM pg_catalog.pg_authid
        WHERE rolname = p_usename AND rolcanlogin AND NOT rolsuper
        AND (rolvaliduntil IS NULL OR rolvaliduntil > pg_catalog.now())$$;
REVOKE ALL ON FUNCTION pgbouncer.get_auth(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION pgbouncer.get_auth(text) TO pgbouncer_auth;
SQL

cat > "$WORK/pgbouncer.ini" <<INI
[databases]
bench = host=$WORK port=$PGPORT dbname=bench

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $WORK/userlist.txt
auth_user = pgbouncer_auth
auth_query = SELECT usename, passwd FROM pgbouncer.get_auth(\$1)
pool_mode = transaction
max_client_conn = 600
default_pool_size = 20
min_pool_size = 5
reserve_pool_size = 5
reserve_pool_timeout = 3
max_db_connections = 25
server_idle_timeout = 600
query_wait_timeout = 120
ignore_startup_parameters = extra_float_digits
server_tls_sslmode = disable
logfile = $WORK/pgbouncer.log
INI
printf '"pgbouncer_auth" "%s"\n' "$AUTH_PASSWORD" > "$WORK/userlist.txt"
chmod 0640 "$WORK/userlist.txt" "$WORK/pgbouncer.ini"
[ "$(id -u)" = 0 ] && chown "${BENCH_OSUSER:-postgres}" "$WORK/userlist.txt" "$WORK/pgbouncer.ini"
( ulimit -n 4096; exec "${AS[@]}" "$PGBOUNCER" "$WORK/pgbouncer.ini" ) >/dev/null 2>&1 &
BOUNCER_PID=$!
for _ in $(seq 50); do
  PGUSER=bench "$BIN/psql" -XAtq -p "$BPORT" -d bench -c 'SELECT 1' >/dev/null 2>&1 && break
  sleep 0.2
done

export PGUSER=bench
"$BIN/pgbench" -q -i -s "$SCALE" -p "$PGPORT" bench >/dev/null 2>&1

# run NAME PORT CLIENTS THREADS -> prints "tps errors" (errors: pgbench lines about a client it could
# not connect; pgbench stops the whole run at the first, so this is 0 or a few, never a count of clients).
run() {
  local name="$1" port="$2" clients="$3" threads="$4" out
  out="$WORK/$name.out"
  ( ulimit -n 4096; "$BIN/pgbench" -n -p "$port" -c "$clients" -j "$threads" -T "$DURATION" bench ) >"$out" 2>&1 || true
  local tps errors
  tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n 1)"
  errors="$(grep -Ec 'could not create connection for client' "$out" || true)"
  echo "${tps:-0} ${errors:-0}"
}

# storm NAME PORT CLIENTS -> prints the number of clients that failed (could not connect or query)
storm() {
  local name="$1" port="$2" clients="$3" i
  mkdir -p "$WORK/$name"
  ulimit -n 4096
  for i in $(seq "$clients"); do
    ( "$BIN/psql" -XAtq -p "$port" -d bench -c 'SELECT 1' -c '\! sleep 2' -c 'SELECT 1' \
        >/dev/null 2>"$WORK/$name/$i.err" || echo failed > "$WORK/$name/$i.failed" ) &
  done
  wait
  find "$WORK/$name" -name '*.failed' | wc -l
}

STORM_B_ERR="$(storm storm-bouncer-psql "$BPORT" "$STORM_CLIENTS")"
STORM_D_ERR="$(storm storm-direct-psql "$PGPORT" "$STORM_CLIENTS")"
STORM_D_WHY="$(cat "$WORK"/storm-direct-psql/*.err 2>/dev/null | sed -n 's/.*FATAL: *//p' | sort | uniq -c | sort -rn | head -n 1)"
read -r STORM_B_TPS _ < <(run storm-bouncer "$BPORT" "$STORM_CLIENTS" "$THREADS")
read -r STORM_D_TPS STORM_D_PGB_ERR < <(run storm-direct "$PGPORT" "$STORM_CLIENTS" "$THREADS")
grep -q 'could not create connection' "$WORK/storm-direct.out" && STORM_D_TPS="aborted"
grep -q 'could not create connection' "$WORK/storm-bouncer.out" && STORM_B_TPS="aborted"
# The TPS comparison alternates the two paths ROUNDS times (bouncer, direct, bouncer, ...) and compares
# the medians: one run each is at the mercy of what else the machine did in those seconds (and of
# which one ran first, right after the storms).
B_ALL=() D_ALL=() B_ERR=0 D_ERR=0
for round in $(seq "$ROUNDS"); do
  read -r tps err < <(run "bouncer-$round" "$BPORT" "$CLIENTS" "$THREADS"); B_ALL+=("$tps"); B_ERR=$((B_ERR + err))
  read -r tps err < <(run "direct-$round" "$PGPORT" "$CLIENTS" "$THREADS"); D_ALL+=("$tps"); D_ERR=$((D_ERR + err))
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'; }
B_TPS="$(median "${B_ALL[@]}")"
D_TPS="$(median "${D_ALL[@]}")"

echo
echo "pgbench TPC-B-like, scale $SCALE, $DURATION s per run, loopback; PostgreSQL max_connections 100"
printf '%-34s %18s %18s\n' "" "through PgBouncer" "direct to Postgres"
printf '%-34s %18s %18s\n' "$STORM_CLIENTS clients: connection errors" "$STORM_B_ERR" "$STORM_D_ERR"
printf '%-34s %18s %18s\n' "$STORM_CLIENTS clients: pgbench tps" "$STORM_B_TPS" "$STORM_D_TPS"
[ -n "$STORM_D_WHY" ] && echo "  direct refusals, most common: $STORM_D_WHY"
printf '%-34s %18s %18s\n' "$CLIENTS clients: tps (median of $ROUNDS)" "$B_TPS" "$D_TPS"
printf '%-34s %18s %18s\n' "$CLIENTS clients: tps of each round" "$(IFS=/; echo "${B_ALL[*]}" | sed 's/\.[0-9]*//g')" \
  "$(IFS=/; echo "${D_ALL[*]}" | sed 's/\.[0-9]*//g')"
printf '%-34s %18s %18s\n' "$CLIENTS clients: connection errors" "$B_ERR" "$D_ERR"
python3 -c "import sys; b, d = float(sys.argv[1]), float(sys.argv[2]); print('ratio (PgBouncer / direct tps at %s clients): %.2f' % (sys.argv[3], b / d if d else 0))" "$B_TPS" "$D_TPS" "$CLIENTS"
if [ -n "${VERBOSE:-}" ]; then for f in "$WORK"/*.out; do echo "== $f"; grep -v "^pgbench: error: client [0-9]* aborted" "$f" | tail -n 12; done; fi

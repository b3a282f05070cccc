#!/usr/bin/env bash
# A throw-away PostgreSQL server for tests, listening only on 127.0.0.1.
#
#   dev/postgres.sh start DIR   initialise a cluster in DIR, start it on a free port and
#                               print its URL: postgresql://postgres@127.0.0.1:PORT/hanse_test
#   dev/postgres.sh stop DIR    stop it (the caller removes DIR)
#
# CI starts one server for the whole run and exports the URL as HANSE_TEST_POSTGRES_URL;
# without it, tests/store/conftest.py calls this script itself. Binaries are taken from
# $PG_BIN, else the newest /usr/lib/postgresql/*/bin, else PATH. Run as root, the server
# runs as the `postgres` OS user (initdb refuses root); DIR is chowned to it, so DIR's
# parent must be traversable by that user (/tmp is). Authentication is `trust`, and
# durability is off (fsync): never point this at data you want to keep.
set -euo pipefail

usage() { echo "usage: $0 start|stop DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
action=$1
dir=$(realpath -m "$2")

find_bin() {
  if [[ -n ${PG_BIN:-} ]]; then echo "$PG_BIN"; return; fi
  local candidate
  candidate=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [[ -n $candidate && -x $candidate/initdb ]]; then echo "$candidate"; return; fi
  candidate=$(command -v initdb || true)
  if [[ -n $candidate ]]; then dirname "$candidate"; return; fi
  echo "no PostgreSQL binaries (initdb, pg_ctl): install postgresql or set PG_BIN" >&2
  exit 3
}

bin=$(find_bin)

as_postgres() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

start() {
  if [[ $(id -u) -eq 0 ]] && ! id postgres >/dev/null 2>&1; then
    echo "running as root but there is no 'postgres' OS user to run the server as" >&2
    exit 3
  fi
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; fi
  chmod 700 "$dir"
  as_postgres "$bin/initdb" --pgdata="$dir/data" --username=postgres --auth-local=trust \
    --auth-host=trust --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1 || {
    cat "$dir/initdb.log" >&2; exit 1; }
  local port attempt
  for attempt in 1 2 3 4 5; do
    # The port is free when picked; another process may take it before the server binds.
    port=$(free_port)
    if as_postgres "$bin/pg_ctl" --pgdata="$dir/data" --log="$dir/server.log" --wait \
      --timeout=60 --options="-c listen_addresses=127.0.0.1 -p $port \
      -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off \
      -c full_page_writes=off -c max_connections=200" start >/dev/null; then
      break
    fi
    port=""
  done
  if [[ -z $port ]]; then
    echo "PostgreSQL did not start; see $dir/server.log:" >&2
    tail -n 20 "$dir/server.log" >&2 || true
    exit 1
  fi
  local deadline=$((SECONDS + 30))
  until "$bin/pg_isready" --host=127.0.0.1 --port="$port" --quiet; do
    if ((SECONDS > deadline)); then
      echo "PostgreSQL on port $port does not accept connections; see $dir/server.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  "$bin/createdb" --host=127.0.0.1 --port="$port" --username=postgres hanse_test
  echo "$port" >"$dir/port"
  echo "postgresql://postgres@127.0.0.1:$port/hanse_test"
}

stop() {
  if [[ -f $dir/data/postmaster.pid ]]; then
    as_postgres "$bin/pg_ctl" --pgdata="$dir/data" --mode=fast --wait stop >/dev/null
  fi
}

case $action in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac

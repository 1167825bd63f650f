#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests (Debian's postgresql-15, installed by setup.sh):
#   postgres.sh start URL_FILE   initdb into a new folder under /tmp, start on a free port of
#                                127.0.0.1, write "postgresql://zeroqc@127.0.0.1:PORT/postgres" to URL_FILE
#   postgres.sh restart URL_FILE stop it and start it again on the same port (its clients lose their connections)
#   postgres.sh pause URL_FILE   stop it, keeping its folder (its clients find no server)
#   postgres.sh resume URL_FILE  start it again on the same port
#   postgres.sh stop URL_FILE    stop it and delete its folder
# PostgreSQL refuses to run as root: as root (CI) it runs as the unprivileged user nobody.
# ctest runs start and stop as the fixture of every test that needs the database.
set -euo pipefail
cmd=${1:?start or stop} url_file=${2:?URL file}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$bin/initdb" ] || { echo "postgres.sh: PostgreSQL server binaries not found (run ./setup.sh)" >&2; exit 1; }
as_db_user() {
  if [ "$(id -u)" = 0 ]; then setpriv --reuid=nobody --regid=nogroup --clear-groups --reset-env "$@"; else "$@"; fi
}

stop() {
  [ -f "$url_file.dir" ] || return 0
  local dir
  dir=$(cat "$url_file.dir")
  [ -d "$dir/data" ] && as_db_user "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir" "$url_file" "$url_file.dir"
}

case $cmd in
  stop) stop ;;
  restart) as_db_user "$bin/pg_ctl" -D "$(cat "$url_file.dir")/data" -m fast -w restart >/dev/null ;;
  pause) as_db_user "$bin/pg_ctl" -D "$(cat "$url_file.dir")/data" -m fast -w stop >/dev/null ;;
  resume)
    dir=$(cat "$url_file.dir")
    as_db_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o "$(cat "$dir/opts")" >/dev/null ;;
  start)
    stop  # a folder left by an interrupted run
    dir=$(mktemp -d /tmp/zeroqc-pg.XXXXXX)
    chmod 755 "$dir"
    [ "$(id -u)" = 0 ] && chown nobody:nogroup "$dir"
    as_db_user "$bin/initdb" -D "$dir/data" -U zeroqc --auth=trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; exit 1; }
    echo "$dir" >"$url_file.dir"
    for _ in $(seq 1 20); do
      port=$((20000 + RANDOM % 40000))
      (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue  # taken
      # Durability off for the tests (they kill serve processes, never the database);
      # ZEROQC_PG_DURABLE=1 keeps PostgreSQL's defaults, for measurements.
      opts="-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200"
      [ "${ZEROQC_PG_DURABLE:-0}" = 1 ] || opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
      if as_db_user "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o "$opts" >/dev/null; then
        echo "$opts" >"$dir/opts"
        echo "postgresql://zeroqc@127.0.0.1:$port/postgres" >"$url_file"
        exit 0
      fi
    done
    cat "$dir/server.log" >&2
    exit 1 ;;
  *) echo "postgres.sh: start, restart, pause, resume or stop" >&2; exit 2 ;;
esac

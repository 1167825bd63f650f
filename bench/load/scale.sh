#!/usr/bin/env bash
# Scaling over one PostgreSQL (issue 12): throughput of 1, 2 and 3 `zeroqc serve` processes (one
# worker each) sharing one database, against one process on SQLite, on this machine. wrk sends
# 6 clients in all, split evenly over the processes; each request is a full inspection
# (?wait=true) of a 1024x1024 toothbrush PNG against 4 references, as in bench/load/run.sh. Each
# process gets cores/processes threads (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS; at least 1).
# PostgreSQL runs with its default durability (fsync on), started and stopped here.
# Then store_bench: the database's own time per inspection, SQLite against PostgreSQL.
#   bench/load/scale.sh [SECONDS]      (after ./setup.sh; needs ../shared/datasets)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-20}
TB=../shared/datasets/mvtec-toothbrush
TMP=$(mktemp -d /tmp/zeroqc-scale-XXXX)
PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  tests/servers/postgres.sh stop "$TMP/pg.url"
  rm -rf "$TMP"
}
trap cleanup EXIT
ZEROQC_PG_DURABLE=1 tests/servers/postgres.sh start "$TMP/pg.url"
PG=$(cat "$TMP/pg.url")
n_db=0

# run LABEL PROCESSES sqlite|postgres
run() {
  local label=$1 procs=$2 store=$3 db=() ports=() urls=() key i
  PIDS=()
  if [ "$store" = postgres ]; then
    n_db=$((n_db + 1))
    psql -q "$PG" -c "CREATE DATABASE scale$n_db"
    db=(--db "${PG%/*}/scale$n_db")
    key=$(build/zeroqc keys create "${db[@]}" --scope admin --name load)
  else
    key=$(build/zeroqc keys create --data "$TMP/$label-0" --scope admin --name load)
  fi
  # The machine's cores are split over its processes (OpenMP and OpenBLAS would otherwise each start
  # one thread per core in every process and spin against each other).
  local threads=$(( $(nproc) / procs )); [ "$threads" -ge 1 ] || threads=1
  for i in $(seq 0 $((procs - 1))); do
    OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads build/zeroqc serve --data "$TMP/$label-$i" "${db[@]}" --port 0 --workers 1 --max-waiters 6 --queue 256 \
      --rate 100000 --burst 100000 >"$TMP/$label-$i.port" 2>/dev/null &
    PIDS+=($!)
  done
  for i in $(seq 0 $((procs - 1))); do
    for _ in $(seq 200); do grep -q port "$TMP/$label-$i.port" 2>/dev/null && break; sleep 0.1; done
    urls+=("http://127.0.0.1:$(awk '/port/ {print $2}' "$TMP/$label-$i.port")")
  done
  curl -sf -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d '{"name":"toothbrush"}' "${urls[0]}/v1/products" >/dev/null
  for r in 000 012 024 036; do
    curl -sf -H "Authorization: Bearer $key" -F "image=@$TB/train/good/$r.png" "${urls[0]}/v1/products/toothbrush/references" >/dev/null
  done
  # Warm up: every process builds its memory bank on the first job it claims.
  for _ in 1 2 3; do
    for u in "${urls[@]}"; do
      curl -sf -H "Authorization: Bearer $key" -F "image=@$TB/test/good/000.png" -F product=toothbrush "$u/v1/inspections?wait=true" >/dev/null &
    done
  done
  wait_jobs() { for p in $(jobs -p); do case " ${PIDS[*]} " in *" $p "*) ;; *) wait "$p" || true ;; esac; done; }
  wait_jobs
  export ZEROQC_KEY=$key ZEROQC_IMAGE=$TB/test/defective/000.png ZEROQC_PRODUCT=toothbrush
  local per=$((6 / procs))
  for i in "${!urls[@]}"; do
    wrk -t1 -c"$per" -d"${SECONDS_PER_RUN}s" --timeout 60s -s bench/load/inspect.lua "${urls[$i]}" | tail -1 >"$TMP/$label-$i.wrk" &
  done
  wait_jobs
  awk -v label="$label" -v procs="$procs" '
    { for (i = 1; i <= NF; i++) { if ($i == "req/s;") rate += $(i - 1); if ($i == "p50") { p = $(i + 1); sub(/,/, "", p); p50 = p50 "" (p50 ? "/" : "") p } if ($i == "errors") err += $(i + 1) } }
    END { printf "| %s | %d | %.2f | %s ms | %d |\n", label, procs, rate, p50, err }' "$TMP"/"$label"-*.wrk
  kill "${PIDS[@]}" 2>/dev/null || true
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
}

echo "zeroqc serve, embedded engine, 1 worker per process, $(nproc) cores, ${SECONDS_PER_RUN}s per run, 6 clients in all"
echo "| store | processes | inspections/s | p50 per process | errors |"
echo "|---|---|---|---|---|"
run sqlite 1 sqlite
run postgres-1 1 postgres
run postgres-2 2 postgres
run postgres-3 3 postgres

n_db=$((n_db + 1))
psql -q "$PG" -c "CREATE DATABASE scale$n_db"
echo
echo "store_bench (the database's time per inspection, 1 MB image):"
ZEROQC_PG_URL="${PG%/*}/scale$n_db" build/bench/store_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true 2>/dev/null |
  grep -E "median"

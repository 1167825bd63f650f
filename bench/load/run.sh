#!/usr/bin/env bash
# Load run of the service with the embedded engine: wrk at 1, 2 and 8 concurrent clients, each
# request a full inspection (?wait=true) of a 1024x1024 toothbrush PNG against 4 references.
#   bench/load/run.sh [SECONDS] [WORKERS]      (after ./setup.sh; needs ../shared/datasets)
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-30}
WORKERS=${2:-1}
DATA=$(mktemp -d /tmp/zeroqc-load-XXXX)
TB=../shared/datasets/mvtec-toothbrush
trap 'kill $SERVER 2>/dev/null || true; rm -rf "$DATA"' EXIT

KEY=$(build/zeroqc keys create --data "$DATA" --scope admin --name load)
build/zeroqc serve --data "$DATA" --port 0 --workers "$WORKERS" --queue 256 --rate 100000 --burst 100000 > "$DATA/port" 2>/dev/null &
SERVER=$!
for _ in $(seq 100); do grep -q port "$DATA/port" 2>/dev/null && break; sleep 0.1; done
URL=http://127.0.0.1:$(awk '/port/ {print $2}' "$DATA/port")
curl -sf -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' -d '{"name":"toothbrush"}' "$URL/v1/products" >/dev/null
for i in 000 012 024 036; do
  curl -sf -H "Authorization: Bearer $KEY" -F "image=@$TB/train/good/$i.png" "$URL/v1/products/toothbrush/references" >/dev/null
done
# Warm up: the first inspection builds the memory bank.
curl -sf -H "Authorization: Bearer $KEY" -F image=@$TB/test/good/000.png -F product=toothbrush "$URL/v1/inspections?wait=true" >/dev/null

export ZEROQC_KEY=$KEY ZEROQC_IMAGE=$TB/test/defective/000.png ZEROQC_PRODUCT=toothbrush
echo "zeroqc serve, embedded engine, $WORKERS worker(s), $(nproc) cores, ${SECONDS_PER_RUN}s per run"
for c in 1 2 8; do
  printf "%d client(s): " "$c"
  wrk -t1 -c"$c" -d"${SECONDS_PER_RUN}s" --timeout 60s -s bench/load/inspect.lua "$URL" | tail -1
done

#!/usr/bin/env bash
# API fuzzing from the description: schemathesis (PyPI, see setup.sh) generates requests from
# web/openapi.json and sends them to a real `zeroqc serve` (its own data folder, a product with a
# reference and a finished inspection, so that examples reach real data), once per key scope (admin,
# write, read) and once with no key. It fails on any server error, crash, answer that does not match
# the description, or wrong auth answer. Left out: positive_data_acceptance, which takes a 400 for a
# schema-valid body as a failure (the description cannot state rules across fields, e.g. "low below
# high", and bytes that are no image are 415 whatever their schema).
#   tests/web/schemathesis.sh                          CI: SCHEMATHESIS_SECONDS (default 30) per run
#   SCHEMATHESIS_SECONDS=600 tests/web/schemathesis.sh a longer hunt
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${ZEROQC_BIN:-build/zeroqc}
ST=.deps/schemathesis/bin/st
EACH=${SCHEMATHESIS_SECONDS:-30}
SEED=${SCHEMATHESIS_SEED:-27}  # fixed in CI; any other for a new hunt
[ -x "$ST" ] || { echo "schemathesis is not installed: run ./setup.sh" >&2; exit 1; }
DIR=$(mktemp -d /tmp/zeroqc-schemathesis.XXXXXX)
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  rm -rf "$DIR"
}
trap cleanup EXIT
# Limits high enough that the fuzzer meets the API's logic, not the rate limits (tested elsewhere).
"$BIN" serve --data "$DIR/data" --port 0 --rate 1000000 --burst 1000000 --auth-failure-burst 1000000000 \
  --queue 100000 --cache "${ZEROQC_CACHE:-build/test-cache}" >"$DIR/out" 2>"$DIR/serve.log" &
PID=$!
for _ in $(seq 100); do grep -q '^port ' "$DIR/out" 2>/dev/null && break; sleep 0.1; done
PORT=$(awk '/^port /{print $2}' "$DIR/out")
[ -n "$PORT" ] || { cat "$DIR/serve.log" >&2; exit 1; }
URL=http://127.0.0.1:$PORT
# A product with a reference, and one finished inspection: a 64x64 grey PNG made here.
python3 - "$DIR/part.png" <<'PY'
import struct, sys, zlib
w = h = 64
raw = b''.join(b'\x00' + bytes([120, 120, 120]) * w for _ in range(h))
chunk = lambda t, d: struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d))
png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b'')
open(sys.argv[1], 'wb').write(png)
PY
# Before each run, as the admin run may have retired the product or revoked keys (both are
# operations it calls): the product made again, and a fresh key of the run's scope.
seed() {
  local admin
  admin=$("$BIN" keys create --data "$DIR/data" --scope admin --name "seed")
  curl -sf -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' -d '{"name":"sponge","replace":true}' "$URL/v1/products" >/dev/null
  curl -sf -H "Authorization: Bearer $admin" -F "image=@$DIR/part.png" "$URL/v1/products/sponge/references" >/dev/null
  curl -sf -H "Authorization: Bearer $admin" -F "image=@$DIR/part.png" -F product=sponge "$URL/v1/inspections?wait=true" >/dev/null
}

status=0
for scope in admin write read none; do
  seed
  auth=()
  [ $scope != none ] && auth=(-H "Authorization: Bearer $("$BIN" keys create --data "$DIR/data" --scope $scope --name "$scope key")")
  echo "== schemathesis, $scope key, ${EACH}s, seed $SEED"
  "$ST" run web/openapi.json --url "$URL" "${auth[@]}" --max-time "$EACH" --seed "$SEED" --workers 1 \
    --request-timeout 60 --exclude-checks positive_data_acceptance --no-color --warnings off \
    >"$DIR/$scope.txt" 2>&1 || status=1
  grep -E "generated|passed|failures|No issues" "$DIR/$scope.txt" | tail -3
  [ $status = 0 ] || { cat "$DIR/$scope.txt"; break; }
done
if grep -q "answered 5[0-9][0-9]" "$DIR/serve.log" && grep "answered 5" "$DIR/serve.log" | grep -vq "answered 50[37]"; then
  echo "the server answered 5xx:" >&2
  grep "answered 5" "$DIR/serve.log" | sort | uniq -c >&2
  status=1
fi
exit $status

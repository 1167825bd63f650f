#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang (ASan + UBSan) and runs each for SECONDS (default 60)
# on a seed corpus from the datasets and the test data. A crash leaves its input in
# build/fuzz/crashes/ and fails the run: make it a regression test.
#   tests/fuzz/run.sh 600        a longer run
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-60}
B=build/fuzz
cmake -S tests/fuzz -B $B -G Ninja -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build $B -j2 >/dev/null
mkdir -p $B/crashes $B/corpus/decode $B/corpus/answer $B/corpus/json $B/corpus/http $B/corpus/checkpoint
# Seeds: a few real images of every format in use, model answers and client JSON.
for f in $(ls ../shared/datasets/*/test/*/000.* ../shared/datasets/aws-nova-samples/*_nok.jpg 2>/dev/null | head -12); do
  cp "$f" $B/corpus/decode/ 2>/dev/null || true
done
cp tests/fuzz/regressions/decode-* $B/corpus/decode/ 2>/dev/null || true  # past crashes stay in the corpus
cp tests/fuzz/regressions/json-* $B/corpus/json/ 2>/dev/null || true
printf '%s' '{"text":"one scratch","objects":[{"name":"scratch","color":"gray","qc":"NOK","reason":"line","bounding_box":[10,20,300,400]}]}' >$B/corpus/answer/a.txt
printf '%s' '```json
{"objects":[{"qc":"pass","bounding_box":{"x_min":1,"y_min":2,"x_max":3,"y_max":4}},]}
```' >$B/corpus/answer/b.txt
printf '%s' '{"name":"sponge","engine":"patch","settings":{"threshold":2.5,"threshold_sigmas":2},"metadata":{"shift":[1,[2]]}}' >$B/corpus/json/a.json
# Requests as the API tests and curl send them: multipart, JSON with base64, raw, chunked.
printf 'POST /v1/inspections HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=zq\r\nContent-Length: 259\r\n\r\n--zq\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n\x1a\n\r\n--zq\r\nContent-Disposition: form-data; name="metadata"\r\n\r\n{"shift":[1,{"a":2}]}\r\n--zq\r\nContent-Disposition: form-data; name="product"\r\n\r\nsponge\r\n--zq--\r\n' >$B/corpus/http/multipart.txt
printf 'POST /v1/products/sponge/references HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 62\r\n\r\n{"image":"iVBORw0KGgo=","filename":"r.png","metadata":{"a":1}}' >$B/corpus/http/json.txt
printf 'POST /v1/inspections?product=sponge HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n\xff\xd8\xff\xd9\r\n0\r\n\r\n' >$B/corpus/http/chunked.txt
# Checkpoints: the head of a real legacy one (its pickles whole, its storages cut) and the same
# pickle inside a zip archive as torch.save writes it.
lite0=.deps/efficientnet/efficientnet-lite0.pth
if [ -s "$lite0" ]; then
  head -c 70000 "$lite0" >$B/corpus/checkpoint/legacy-head.pth
  python3 - "$lite0" $B/corpus/checkpoint/zip.pth <<'PY'
import pickle, sys, zipfile
with open(sys.argv[1], 'rb') as f:
    for _ in range(3):
        pickle.load(f)  # magic, protocol, system info: plain values
    start = f.tell()
    data = f.read(70000)
end = data.index(b'\x62\x2e') + 2  # the state dict's pickle ends with BUILD, STOP
with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_STORED) as z:
    z.writestr('archive/data.pkl', data[:end])
    z.writestr('archive/data/107635504', b'\0' * 64)
PY
fi
cp tests/fuzz/regressions/checkpoint-* $B/corpus/checkpoint/ 2>/dev/null || true
status=0
for h in decode answer json http checkpoint; do
  echo "fuzz_$h: ${SECONDS_EACH}s"
  if ! $B/fuzz_$h -seed=1 -max_total_time="$SECONDS_EACH" -max_len=1048576 -rss_limit_mb=2048 -artifact_prefix=$B/crashes/$h- \
       -print_final_stats=1 $B/corpus/$h >$B/fuzz_$h.log 2>&1; then
    echo "fuzz_$h FAILED: see $B/fuzz_$h.log and $B/crashes/"; tail -30 $B/fuzz_$h.log; status=1
  else
    grep -E "stat::number_of_executed_units|Done" $B/fuzz_$h.log | tail -2
  fi
done
exit $status

#!/usr/bin/env bash
# The README's quick start, run exactly as printed: the block between <!-- quickstart --> and
# <!-- /quickstart --> goes to bash -euo pipefail in an empty folder that has the repository's
# build/ and demo/ beside it, as a user's clone would. Then what it printed and wrote is checked,
# and the README's "Output" example against the result this version gives for the same part.
set -euo pipefail
src=$1 build=$2
work=$(mktemp -d)
serve_pid=""
cleanup() {
  pkill -f "serve --data plate/service" -P $$ 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
ln -s "$build" "$work/build"
ln -s "$src/demo" "$work/demo"
awk '/<!-- quickstart -->/{on=1; next} /<!-- \/quickstart -->/{on=0} on' "$src/README.md" |
  awk '/^```sh$/{code=1; next} /^```$/{code=0} code' > "$work/quickstart.sh"
test -s "$work/quickstart.sh" || { echo "no quick start block in README.md"; exit 1; }
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export PORT HOME="$work/home"  # the memory-bank cache (~/.cache/zeroqc) stays in the test folder
cd "$work"
if ! timeout 600 bash -euo pipefail quickstart.sh > out.txt 2> err.txt; then
  echo "the quick start failed:"; cat out.txt err.txt; exit 1
fi
fail() { echo "FAILED: $*"; echo "--- stdout"; cat out.txt; echo "--- stderr"; tail -30 err.txt; exit 1; }
grep -q '^verdict: add references like these' out.txt || fail "refs check did not ask for references"
[ "$(wc -l < plate/results.jsonl)" = 2 ] || fail "inspect wrote $(wc -l < plate/results.jsonl) lines, not 2"
[ -s plate/bench/report.html ] && [ -s plate/bench/metrics.json ] || fail "bench wrote no report"
grep -q '"product": *"plate"\|"product":"plate"' out.txt || fail "the service did not answer the inspection"
# The README's Output example is this version's result for metalplate_nok2.jpg.
example=$(awk '/^## Output/{on=1} on && /^```json$/{code=1; next} code && /^```$/{exit} code' "$src/README.md" | tr -d '\n')
python3 - "$example" plate/results.jsonl <<'PY' || fail "README's Output example is not what this version prints"
import json, sys
example = json.loads(sys.argv[1])
got = [json.loads(l) for l in open(sys.argv[2])]
got = next(g for g in got if g["image"]["path"].endswith(example["image"]["path"].split("/")[-1]))
for k in ("verdict", "engine", "calibration"):
    assert example[k] == got[k], (k, example[k], got[k])
for k in ("score", "threshold"):
    assert abs(example[k] - got[k]) < 0.0015, (k, example[k], got[k])
assert len(example["objects"]) == len(got["objects"]), (example["objects"], got["objects"])
for e, g in zip(example["objects"], got["objects"]):
    for c in ("x_min", "y_min", "x_max", "y_max"):
        assert abs(e["bounding_box"][c] - g["bounding_box"][c]) <= 16, (c, e, g)
PY
echo "quick start: 1 passed, 0 failed"

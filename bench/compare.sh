#!/usr/bin/env bash
# Old against new on this machine, in one run: builds OLD (a commit) in a temporary folder with
# this tree's bench/inspect_bench.cc, runs the old and the new benchmark alternately REPS times,
# and prints the median of each case, old/new, and the peak memory of `zeroqc inspect` on a
# 6000x4000 JPEG. Needs ./setup.sh first (build/ and build/models).
#   bench/compare.sh OLD [REPS] [FILTER]      e.g. bench/compare.sh 039a58d 5
#   REPS default 5; FILTER a --benchmark_filter regex (default: every case)
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=${1:?usage: bench/compare.sh OLD_COMMIT [REPS] [FILTER]}
REPS=${2:-5}
FILTER=${3:-.}
NEW=build
[ -x $NEW/bench/inspect_bench ] || { echo "build the new tree first: ./setup.sh" >&2; exit 2; }
cmake --build $NEW -j2 --target inspect_bench zeroqc >/dev/null

TMP=${COMPARE_DIR:-/tmp/zeroqc-compare-$(git rev-parse --short "$OLD")}
if [ ! -x "$TMP/build/bench/inspect_bench" ]; then
  echo "building $OLD in $TMP (a few minutes)" >&2
  rm -rf "$TMP" && mkdir -p "$TMP/src"
  git archive "$OLD" | tar -x -C "$TMP/src"
  ln -sfn "$(cd .. && pwd)/shared" "$TMP/shared"  # the datasets, as beside this tree
  cp bench/inspect_bench.cc "$TMP/src/bench/"      # the same cases on both sides
  cmake -S "$TMP/src" -B "$TMP/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF >/dev/null
  cmake --build "$TMP/build" -j2 --target inspect_bench zeroqc >/dev/null
  cp -r $NEW/models "$TMP/build/"
fi

# Alternate: each repetition runs old, then new (banks are built outside the timed loops and cached).
OUT=$TMP/results && rm -rf "$OUT" && mkdir -p "$OUT"
for rep in $(seq "$REPS"); do
  for side in old new; do
    bin=$([ $side = old ] && echo "$TMP/build/bench/inspect_bench" || echo $NEW/bench/inspect_bench)
    "$bin" --benchmark_filter="$FILTER" --benchmark_format=csv 2>/dev/null | grep '^"BM_' >>"$OUT/$side.csv"
  done
  echo "repetition $rep/$REPS done" >&2
done

# Medians per case (real time, in the case's unit).
median() {  # side case
  grep "^\"$2\"," "$OUT/$1.csv" | cut -d, -f3 | sort -g | awk '{a[NR]=$1} END {if (NR==0) print "nan"; else if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'
}
printf '%s\n' "$(lscpu | grep -m1 'Model name' | sed 's/  */ /g'), $(nproc) cores; flags: $(grep -o -w -m1 'avx512f\|avx2' /proc/cpuinfo | sort -u | tr '\n' ' ')"
printf '%-34s %12s %12s %8s\n' case old new old/new
for c in $(cut -d, -f1 "$OUT/new.csv" | sort -u | tr -d '"'); do
  o=$(median old "$c") n=$(median new "$c") unit=$(grep -m1 "^\"$c\"," "$OUT/new.csv" | cut -d, -f5)
  printf '%-34s %9.1f %-2s %9.1f %-2s %8.2f\n' "$c" "$o" "$unit" "$n" "$unit" "$(awk -v o="$o" -v n="$n" 'BEGIN {print (n > 0 ? o / n : 0)}')"
done

# Peak memory of one `zeroqc inspect` of the 6000x4000 JPEG (bank cached), old and new.
BIG=/tmp/zeroqc-bench-6000x4000.jpg
REFS=$OUT/refs && mkdir -p "$REFS" && cp ../shared/datasets/mvtec-toothbrush/train/good/00[0-3].png "$REFS/"
if [ -f "$BIG" ] && [ -x /usr/bin/time ]; then
  for side in old new; do
    zq=$([ $side = old ] && echo "$TMP/build/zeroqc" || echo $NEW/zeroqc)
    "$zq" inspect --refs "$REFS" --cache "$OUT/cache-$side" "$BIG" >/dev/null 2>&1 || true  # bank built and cached
    kb=$( (/usr/bin/time -f %M "$zq" inspect --refs "$REFS" --cache "$OUT/cache-$side" "$BIG" 2>&1 >/dev/null || true) | tail -1)
    [[ $kb =~ ^[0-9]+$ ]] && printf 'peak memory, zeroqc inspect 6000x4000 JPEG, %s: %d MB\n' "$side" $((kb / 1024))
  done
fi

#!/usr/bin/env python3
"""Re-fits the one-reference threshold margin of a backbone offline, from a K=1 suite run.

The K=1 threshold is the median score of the reference's jittered copies times (1 + 0.35 x sigmas),
1.7 at the default sigmas 2. Every result line of `zeroqc bench --shots 1` holds its score and threshold,
so scaling the threshold by m / 1.7 gives the verdicts another margin m would have given. Prints the
balanced accuracy per set (mean over seeds) and the mean over the sets, for each margin.

  bench/refit_one_shot.py bench-out/lite2-k1 1.7 1.0 1.3 1.5 1.7 2.0
"""
import collections
import glob
import json
import sys


def load(run_dir):
    sets = {}
    for f in sorted(glob.glob(run_dir + '/*/results.jsonl')):
        runs = collections.defaultdict(list)
        for line in open(f):
            r = json.loads(line)
            if 'score' not in r or r.get('verdict') is None:
                continue
            runs[r['bench']['seed']].append((r['score'], r['threshold'], r['bench']['expected'] == 'NOK'))
        sets[f.split('/')[-2]] = runs
    return sets


def balanced_accuracy(runs, scale):
    out = []
    for rows in runs.values():
        nok = [s > t * scale for s, t, defective in rows if defective]
        ok = [s <= t * scale for s, t, defective in rows if not defective]
        out.append(0.5 * (sum(nok) / len(nok) + sum(ok) / len(ok)))
    return sum(out) / len(out)


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    sets, base = load(sys.argv[1]), float(sys.argv[2])
    for m in map(float, sys.argv[3:]):
        per = {name: balanced_accuracy(runs, m / base) for name, runs in sets.items()}
        print(f'margin {m:.2f}: mean {sum(per.values()) / len(per):.3f}  ' +
              '  '.join(f'{k}={v:.3f}' for k, v in per.items()))


if __name__ == '__main__':
    main()

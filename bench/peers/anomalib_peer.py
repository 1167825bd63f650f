#!/usr/bin/env python3
"""zeroqc against anomalib's PatchCore on the same machine, images and K, in one run.

Each measurement is a process of its own, so that its peak memory is its own (wait4's ru_maxrss):
  zeroqc    `zeroqc inspect --refs REFS PARTS...`, the engine's time per part from its JSON lines;
  fit       anomalib's PatchcoreModel (WideResNet-50, layer2 + layer3, as anomalib ships it) builds
            its bank from the K references in PyTorch and saves it (once per K);
  export    that fitted model converted to OpenVINO IR (once per K), as anomalib's export does;
  eager     the fitted model in PyTorch: backbone, saved bank, the parts;
  openvino  the deployed peer: the OpenVINO runtime reads the IR, compiles it for the CPU, the parts.
zeroqc, eager and openvino run alternately, ROUNDS times, on the same references and test photos at
the same input size. The peer's backbone is initialised at random (pre_trained=False): no weights can
be downloaded here. Its speed does not depend on the weights' values; its verdicts mean nothing, and
none is read.

Per part is the time from the decoded image to the score (zeroqc: `timing_ms`, the engine's own; the
peer: resize, normalise, forward, nearest neighbours, score), the median and p90 over parts and
rounds. Bank is the time from the K references to a model ready to judge (zeroqc: a run without its
bank cache less a run with it; eager: features of the references and the coreset; openvino: that and
the export). First call is the time from the process's start to its first result with the bank
built (zeroqc: with its bank cache; eager: imports, model, saved bank; openvino: the runtime's import,
reading and compiling the IR). Throughput is parts a second over the whole run of parts, on 2 cores.
Peak RSS is that of the process that judges the parts (the fit's and the export's are printed too).

Run through bench/peers/anomalib.sh, which makes the virtualenv.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time


def p(values, q):
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


def run_child(cmd, env=None):
    """Runs cmd; returns (stdout, wall seconds, peak RSS in MB)."""
    # stderr to a file: a child that writes much there (progress bars) must not block on a full pipe.
    with tempfile.TemporaryFile() as err:
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            sys.exit(f"{cmd[0]} failed ({status}): {err.read().decode(errors='replace')[-2000:]}")
    return out.decode(), wall, usage.ru_maxrss / 1024.0


# ---------------------------------------------------------------- the peer, in its own processes
# As a user deploys it: fit in PyTorch (the bank), export once, then run the exported model with the
# OpenVINO runtime alone. Each step is a process of its own, so each peak memory is that step's.
def peer_model(args, fitted=False):
    """The peer's model; fitted: with the bank the fit saved, ready to judge."""
    import torch
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the random backbone is the same in every process
    model = PatchcoreModel(layers=["layer2", "layer3"], backbone="wide_resnet50_2", pre_trained=False, num_neighbors=9)
    if fitted:
        model.memory_bank = torch.load(args.bank)
        model.eval()
    return model


def peer_tensor(args, bgr):
    """As anomalib's transforms: resize, to RGB in [0, 1], ImageNet normalisation; NCHW float32."""
    import cv2
    import numpy as np

    rgb = cv2.cvtColor(cv2.resize(bgr, (args.size, args.size), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB)
    x = (rgb.astype(np.float32) / 255.0 - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))[None]


def time_parts(args, infer, t_start):
    import cv2

    parts = [cv2.imread(f) for f in args.parts]
    first, times = None, []
    t_parts = time.monotonic()
    for bgr in parts:
        t = time.monotonic()
        infer(bgr)
        times.append(1000 * (time.monotonic() - t))
        if first is None:
            first = time.monotonic() - t_start
    return {"per_part_ms": times, "first_call_s": first, "parts_s": time.monotonic() - t_parts}


def worker_fit(args):
    """Builds the bank from the references (features, then anomalib's coreset) and saves it."""
    import cv2
    import torch

    model = peer_model(args)
    refs = [cv2.imread(f) for f in args.refs]
    t0 = time.monotonic()
    model.train()
    with torch.no_grad():
        embeddings = torch.vstack([model(torch.from_numpy(peer_tensor(args, r))) for r in refs])
        model.subsample_embedding(embeddings, sampling_ratio=0.1)
    bank_s = time.monotonic() - t0
    torch.save(model.memory_bank, args.bank)
    print(json.dumps({"bank_s": bank_s, "memory_bank": list(model.memory_bank.shape)}))


def worker_eager(args):
    """The fitted model in PyTorch: the backbone, the saved bank, then the parts."""
    t_start = time.monotonic()
    import torch
    import anomalib

    model = peer_model(args, fitted=True)

    def infer(bgr):
        with torch.no_grad():
            model(torch.from_numpy(peer_tensor(args, bgr)))

    result = time_parts(args, infer, t_start)
    result.update(torch=torch.__version__, anomalib=anomalib.__version__)
    print(json.dumps(result))


def worker_export(args):
    """The fitted model (same random backbone, the saved bank) to OpenVINO IR, as anomalib's export."""
    t_start = time.monotonic()
    import cv2
    import torch
    import openvino as ov

    model = peer_model(args, fitted=True)
    with torch.no_grad():
        ov_model = ov.convert_model(model, example_input=torch.from_numpy(peer_tensor(args, cv2.imread(args.refs[0]))))
    ov.save_model(ov_model, args.ir)
    print(json.dumps({"export_s": time.monotonic() - t_start}))


def worker_openvino(args):
    """The deployed peer: the OpenVINO runtime reads the IR, compiles it for the CPU, judges the parts."""
    t_start = time.monotonic()
    import openvino as ov

    compiled = ov.Core().compile_model(args.ir, "CPU", {"INFERENCE_NUM_THREADS": str(args.threads)})
    request = compiled.create_infer_request()

    def infer(bgr):
        request.infer({0: peer_tensor(args, bgr)})

    result = time_parts(args, infer, t_start)
    result["openvino"] = ov.__version__
    print(json.dumps(result))


# ---------------------------------------------------------------- zeroqc
def zeroqc_run(args, refs_dir, parts, cache):
    cmd = [args.zeroqc, "inspect", "--refs", refs_dir, "--cache", cache, "--line-window", "0"] + parts
    out, wall, rss = run_child(cmd)
    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    return [l["timing_ms"] for l in lines], wall, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zeroqc", help="the zeroqc binary")
    ap.add_argument("--dataset", help="an MVTec-layout set: train/good, test/*")
    ap.add_argument("--shots", default="1,16,all")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--size", type=int, default=416, help="input side for both (zeroqc's lite2 reads 416 x 416)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write every measurement here")
    sub = ap.add_subparsers(dest="cmd")
    w = sub.add_parser("worker")
    w.add_argument("--mode", choices=["fit", "eager", "export", "openvino"], required=True)
    w.add_argument("--size", type=int, required=True)
    w.add_argument("--threads", type=int, default=2)
    w.add_argument("--refs", nargs="+", default=[])
    w.add_argument("--parts", nargs="+", default=[])
    w.add_argument("--bank", help="the saved memory bank (fit writes it, eager and export read it)")
    w.add_argument("--ir", help="the OpenVINO IR (export writes it, openvino reads it)")
    args = ap.parse_args()
    if args.cmd == "worker":
        return {"fit": worker_fit, "eager": worker_eager, "export": worker_export, "openvino": worker_openvino}[args.mode](args)
    if not args.zeroqc or not args.dataset:
        ap.error("--zeroqc and --dataset are needed")

    good = sorted(os.path.join(args.dataset, "train/good", f) for f in os.listdir(os.path.join(args.dataset, "train/good")))
    parts = sorted(os.path.join(args.dataset, "test", d, f) for d in os.listdir(os.path.join(args.dataset, "test"))
                   for f in os.listdir(os.path.join(args.dataset, "test", d)))
    rows, raw = [], {}
    for shot in args.shots.split(","):
        k = len(good) if shot == "all" else int(shot)
        refs = good[:k]
        m = {"zeroqc": {"per_part_ms": [], "rss": [], "first": [], "bank": [], "tput": []},
             "eager": {"per_part_ms": [], "rss": [], "first": [], "bank": [], "tput": []},
             "openvino": {"per_part_ms": [], "rss": [], "first": [], "bank": [], "tput": []}}
        with tempfile.TemporaryDirectory() as tmp:
            refs_dir = os.path.join(tmp, "refs")
            os.mkdir(refs_dir)
            for r in refs:
                os.symlink(os.path.abspath(r), os.path.join(refs_dir, os.path.basename(r)))
            # The peer's bank is fitted once per K (its coreset takes many minutes at K = all), then
            # exported once; each round runs the fitted model as a user would: eager, and deployed.
            bank, ir = os.path.join(tmp, "bank.pt"), os.path.join(tmp, "patchcore.xml")
            peer = [sys.executable, __file__, "worker", "--size", str(args.size), "--threads", str(args.threads),
                    "--bank", bank, "--ir", ir]
            out, _, fit_rss = run_child(peer + ["--mode", "fit", "--refs", *refs])
            fit = json.loads(out.strip().splitlines()[-1])
            out, _, export_rss = run_child(peer + ["--mode", "export", "--refs", refs[0]])
            export = json.loads(out.strip().splitlines()[-1])
            m["eager"]["bank"].append(fit["bank_s"])
            m["openvino"]["bank"].append(fit["bank_s"] + export["export_s"])
            m["peer_fit"] = {**fit, "peak_rss_mb": fit_rss, "export_s": export["export_s"], "export_peak_rss_mb": export_rss}
            print(f"K={k} peer: bank {fit['bank_s']:.1f} s ({fit['memory_bank'][0]} patches, peak RSS {fit_rss:.0f} MB), "
                  f"export {export['export_s']:.1f} s (peak RSS {export_rss:.0f} MB)", file=sys.stderr, flush=True)
            for rnd in range(args.rounds):
                # zeroqc: a cold bank (a fresh cache), then the parts with the bank cached.
                cache = os.path.join(tmp, f"cache{rnd}")
                _, cold, _ = zeroqc_run(args, refs_dir, parts[:1], cache)
                _, warm, _ = zeroqc_run(args, refs_dir, parts[:1], cache)
                times, wall, rss = zeroqc_run(args, refs_dir, parts, cache)
                z = m["zeroqc"]
                z["per_part_ms"] += times
                z["rss"].append(rss)
                z["first"].append(warm)
                z["bank"].append(max(0.0, cold - warm))
                z["tput"].append(len(parts) / wall)
                for mode in ("eager", "openvino"):
                    out, wall, rss = run_child(peer + ["--mode", mode, "--parts", *parts])
                    r = json.loads(out.strip().splitlines()[-1])
                    e = m[mode]
                    e["per_part_ms"] += r["per_part_ms"]
                    e["rss"].append(rss)
                    e["first"].append(r["first_call_s"])
                    e["tput"].append(len(parts) / r["parts_s"])
                    e["versions"] = {k: r[k] for k in ("torch", "anomalib", "openvino") if k in r}
                print(f"K={k} round {rnd + 1}/{args.rounds} done", file=sys.stderr)
        raw[f"K={k}"] = m
        for mode in ("zeroqc", "eager", "openvino"):
            e = m[mode]
            rows.append((k, mode, statistics.median(e["per_part_ms"]), p(e["per_part_ms"], 0.9), statistics.median(e["tput"]),
                         statistics.median(e["bank"]), statistics.median(e["first"]), max(e["rss"])))
            r = rows[-1]  # as soon as it is known: a long run stopped later keeps what it measured
            print(f"K={k} {mode}: per part p50 {r[2]:.0f} ms, p90 {r[3]:.0f} ms, {r[4]:.2f} parts/s, bank {r[5]:.2f} s, "
                  f"first call {r[6]:.2f} s, peak RSS {r[7]:.0f} MB", file=sys.stderr, flush=True)
    print(f"{len(parts)} parts of {args.dataset}, {args.rounds} rounds alternating, input {args.size} x {args.size}, "
          f"{args.threads} threads; peer: PatchCore (WideResNet-50 layer2+layer3, random weights)\n")
    print("| K | tool | per part p50 ms | p90 ms | parts/s | bank s | first call s | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for k, mode, p50, p90, tput, bank, first, rss in rows:
        print(f"| {k} | {mode} | {p50:.0f} | {p90:.0f} | {tput:.2f} | {bank:.2f} | {first:.2f} | {rss:.0f} |")
    print()
    for k in sorted({r[0] for r in rows}):
        z = next(r for r in rows if r[0] == k and r[1] == "zeroqc")
        for mode in ("eager", "openvino"):
            o = next(r for r in rows if r[0] == k and r[1] == mode)
            print(f"K={k}: {mode} / zeroqc per part {o[2] / z[2]:.1f}x, peak RSS {o[7] / z[7]:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f)


if __name__ == "__main__":
    main()

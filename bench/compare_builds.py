#!/usr/bin/env python3
"""Two builds' gmlp_bench side by side: the portable default build (SIMD kernels picked at run
time, everything else -march=x86-64-v2) against -DFLAXPP_NATIVE=ON. The two binaries run in turn,
round after round, so machine noise falls on both alike; prints each metric's median over the
rounds and the ratio dispatched / native.

    scripts/bench_builds [--rounds N] [--configs i,ii,iii]   # builds both, then runs this
    bench/compare_builds.py A/bin/gmlp_bench B/bin/gmlp_bench [--rounds N] [--configs LIST]
"""
import argparse
import json
import statistics
import subprocess
import sys

METRICS = ["init_ms", "forward_ms", "fwd_bwd_ms", "train_step_ms"]


def run(binary, configs):
    out = subprocess.run([binary, "--quick", "--json", "--no-torch", "--configs", configs],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["configs"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dispatched")
    ap.add_argument("native")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--configs", default="i,ii,iii")
    args = ap.parse_args()
    names = {"dispatched": args.dispatched, "native": args.native}
    samples = {b: {} for b in names}  # build -> (config, metric) -> [ms]
    for r in range(args.rounds):
        order = list(names) if r % 2 == 0 else list(reversed(list(names)))
        for build in order:
            for cfg, res in run(names[build], args.configs).items():
                for m in METRICS:
                    samples[build].setdefault((cfg, m), []).append(res["flaxpp"][m])
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    print(f"gmlp_bench --quick, {args.rounds} rounds each, alternating; medians in ms")
    print(f"{'config':6} {'metric':14} {'dispatched':>11} {'native':>9} {'ratio':>7}")
    worst = 0.0
    for key in samples["native"]:
        d = statistics.median(samples["dispatched"][key])
        n = statistics.median(samples["native"][key])
        worst = max(worst, d / n)
        print(f"{key[0]:6} {key[1]:14} {d:11.3f} {n:9.3f} {d / n:7.3f}")
    print(f"largest ratio dispatched / native: {worst:.3f}")


if __name__ == "__main__":
    main()

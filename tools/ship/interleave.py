#!/usr/bin/env python3
"""Runs two or more binaries with the same arguments, interleaved (A B, then B A, ...), and reports each one's CPU time
(user + system from wait4's rusage) as min, 10th percentile, quartile and median: on a shared machine the load
changes from second to second, and interleaving puts both builds under the same load, which separate series of runs
do not.

usage: interleave.py RUNS -- BIN_A BIN_B [BIN...] -- ARGS...
e.g.   interleave.py 150 -- /tmp/before/iommu out/linux-x64/iommu -- groups --source /tmp/meas/m
Three warm-up rounds are not counted. Output goes to /dev/null.
"""
import os, subprocess, sys

def main(argv):
    try:
        runs = int(argv[0])
        i = argv.index("--", 1)
        j = argv.index("--", i + 1)
    except (IndexError, ValueError):
        sys.exit(__doc__)
    bins, args = argv[i + 1:j], argv[j + 1:]
    if len(bins) < 2:
        sys.exit("interleave.py: give at least two binaries")
    devnull = os.open(os.devnull, os.O_WRONLY)
    cpu = {b: [] for b in bins}
    for k in range(runs + 3):
        for b in (bins if k % 2 == 0 else bins[::-1]):
            p = subprocess.Popen([b] + args, stdout=devnull, stderr=devnull)
            _, _, ru = os.wait4(p.pid, 0)
            if k >= 3:
                cpu[b].append((ru.ru_utime + ru.ru_stime) * 1e3)
    for b in bins:
        v = sorted(cpu[b])
        q = lambda f: v[int(f * (len(v) - 1))]
        print(f"{b}: CPU min {v[0]:.1f} p10 {q(.1):.1f} p25 {q(.25):.1f} median {q(.5):.1f} ms ({len(v)} runs)")

if __name__ == "__main__":
    main(sys.argv[1:])

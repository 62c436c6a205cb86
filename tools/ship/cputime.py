#!/usr/bin/env python3
"""Runs a command N times and reports its CPU time (user + system, from wait4's rusage, microsecond resolution, the
command's reaped children included), wall time and peak RSS: the figures docs/PERFORMANCE.md gives for the shipped
binary on a shared machine, where wall time mostly measures the wait for a CPU.

usage: cputime.py [--runs N] [--warmup N] [--cold] [--label NAME] -- COMMAND...
  --cold   drop the page cache before every run (echo 3 > /proc/sys/vm/drop_caches, needs root): the binary, the
           snapshot and pci.ids are read from disk again
Prints one line: label, runs, wall min/median, CPU user+sys min/median (and user, sys medians: the kernel splits a
short process's CPU time between them by tick sampling, so only their sum is precise), peak RSS (GNU time, one run).
"""
import os, statistics, subprocess, sys, time

def main(argv):
    runs, warmup, cold, label = 20, 3, False, None
    while argv and argv[0] != "--":
        opt = argv.pop(0)
        if opt == "--runs": runs = int(argv.pop(0))
        elif opt == "--warmup": warmup = int(argv.pop(0))
        elif opt == "--cold": cold = True
        elif opt == "--label": label = argv.pop(0)
        else: sys.exit(f"cputime.py: unknown option {opt}")
    cmd = argv[1:]
    if not cmd: sys.exit("cputime.py: no command")
    devnull = os.open(os.devnull, os.O_WRONLY)
    samples = []
    for i in range((0 if cold else warmup) + runs):
        if cold:
            os.sync()
            with open("/proc/sys/vm/drop_caches", "w") as f: f.write("3\n")
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=devnull, stderr=devnull)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        if i >= (0 if cold else warmup):
            samples.append((wall * 1e3, ru.ru_utime * 1e3, ru.ru_stime * 1e3, ru.ru_maxrss))
    # wait4's ru_maxrss counts the memory of the forked Python before exec: peak RSS comes from GNU time instead (a
    # small C parent), in one more run.
    rss = None
    if os.path.exists("/usr/bin/time"):
        import tempfile
        with tempfile.NamedTemporaryFile("r") as f:
            subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f.name] + cmd, stdout=devnull, stderr=devnull)
            rss = int(f.read().split()[-1])
    wall = [s[0] for s in samples]; cpu = [s[1] + s[2] for s in samples]
    print(f"{label or ' '.join(cmd)}: {len(samples)} {'cold' if cold else 'warm'} runs; wall min {min(wall):.1f} ms, "
          f"median {statistics.median(wall):.1f} ms; CPU user+sys min {min(cpu):.1f} ms, median {statistics.median(cpu):.1f} ms "
          f"(user {statistics.median([s[1] for s in samples]):.1f}, sys {statistics.median([s[2] for s in samples]):.1f}); "
          + (f"peak RSS {rss / 1024:.1f} MiB" if rss is not None else "peak RSS unknown (no /usr/bin/time)"))

if __name__ == "__main__":
    main(sys.argv[1:])

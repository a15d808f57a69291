#!/usr/bin/env python3
"""Name the sites of a heap_sites.c dump and give each one's chunk bytes per
arm: heap_sites.py DUMP ARMS (ARMS: the configured arms of the run, e.g.
100000 for --calls 10 10000 at K = 10). Sites under 0.05 B an arm are summed
in one line. See tests/bench/heap_sites.c."""
import subprocess
import sys


def name(frame, cache={}):
    if frame == "?":
        return "?"
    obj, off = frame.rsplit("+", 1)
    if frame not in cache:
        out = subprocess.run(["addr2line", "-f", "-e", obj, off], capture_output=True,
                             text=True).stdout.split("\n")
        cache[frame] = "%s(%s)" % (out[0], obj.rsplit("/", 1)[-1])
    return cache[frame]


def main():
    dump, arms = sys.argv[1], int(sys.argv[2])
    rows, total, small = [], 0, 0
    for line in open(dump):
        f = line.rstrip("\n").split("\t")
        count, req, chunk = int(f[0]), int(f[1]), int(f[2])
        total += chunk
        if chunk / arms < 0.05:
            small += chunk
            continue
        rows.append((chunk, count, req, " <- ".join(name(x) for x in f[3:])))
    rows.sort(reverse=True)
    for chunk, count, req, where in rows:
        print("%8.1f B/arm  %9d chunks  %11d requested  %s" % (chunk / arms, count, req, where))
    print("%8.1f B/arm  smaller sites" % (small / arms))
    print("%8.1f B/arm  in all (chunk bytes, as mallinfo2 uordblks)" % (total / arms))


main()

"""python -m mab: the mab CLI's read-only commands, through the binding.

    python -m mab check CONFIG          validate a config, describe its experiments
    python -m mab stats CONFIG [--json] every arm's counters
    python -m mab report CONFIG         per experiment: the leading arm, each
                                        arm's share of pulls and mean reward
                                        with a 95% (Wilson) interval

They open CONFIG with its storage, as `mab check` and `mab stats` do (a
json_file store open in another process refuses: MAB_EBUSY). Errors are
printed as one line on stderr; the exit status is 1.
"""
import argparse
import json
import math
import sys
from typing import List, Optional

import mab

_Z = 1.959963984540054  # the 97.5% normal quantile: a 95% interval


def _check(engine: "mab.Engine") -> None:
    experiments = engine.experiments()
    print("config:      %s" % engine.config_path)
    print("storage:     %s" % engine.storage_name)
    print("experiments: %d" % len(experiments))
    print()
    print("%-10s  %-14s  %4s  %-10s  %s" % ("experiment", "policy", "arms", "reward",
                                          "policy file"))
    for e in experiments:
        print("%-10s  %-14s  %4d  %-10s  %s" % (e.id, e.policy, e.n_arms,
                                              "[%g, %g]" % (e.reward_min, e.reward_max),
                                              e.policy_path))


def _stats(engine: "mab.Engine", as_json: bool) -> None:
    experiments = engine.experiments()
    if as_json:
        doc = {"experiments": {e.id: {"policy": e.policy, "arms": {
            a.arm_id: {"pulls": a.pulls, "rewards": a.rewards, "reward_sum": a.reward_sum,
                       "mean": a.mean} for a in engine.stats(e.id)}} for e in experiments}}
        print(json.dumps(doc, separators=(",", ":")))
        return
    for e in experiments:
        print("experiment %s (policy %s)" % (e.id, e.policy))
        print("  %-10s %8s %8s %11s %9s" % ("arm", "pulls", "rewards", "reward_sum", "mean"))
        for a in engine.stats(e.id):
            print("  %-10s %8d %8d %11g %9.6f" % (a.arm_id, a.pulls, a.rewards, a.reward_sum,
                                                 a.mean))


def wilson(p: float, n: int) -> "tuple[float, float]":
    """The 95% Wilson score interval of a proportion p seen over n trials."""
    if n <= 0:
        return 0.0, 1.0
    z2 = _Z * _Z
    denom = 1 + z2 / n
    center = (p + z2 / (2 * n)) / denom
    half = _Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def _report(engine: "mab.Engine") -> None:
    for e in engine.experiments():
        arms = engine.stats(e.id)
        total = sum(a.pulls for a in arms)
        span = e.reward_max - e.reward_min
        tried = [a for a in arms if a.pulls]
        leader = max(tried, key=lambda a: a.mean) if tried else None
        print("experiment %s (policy %s): %d pulls, leading arm %s" % (
            e.id, e.policy, total, leader.arm_id if leader else "none (no pulls yet)"))
        print("  %-10s %8s %7s %9s  %s" % ("arm", "pulls", "share", "mean", "95% interval"))
        for a in arms:
            if a.pulls:
                p = min(1.0, max(0.0, (a.mean - e.reward_min) / span)) if span else 0.0
                lo, hi = wilson(p, a.pulls)
                interval = "[%.4f, %.4f]" % (e.reward_min + lo * span, e.reward_min + hi * span)
            else:
                interval = "-"
            share = "%6.1f%%" % (100.0 * a.pulls / total) if total else "     -"
            print("  %-10s %8d %7s %9.4f  %s" % (a.arm_id, a.pulls, share, a.mean, interval))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mab", description=(
        "The mab CLI's check, stats and report, through the Python binding."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (("check", "validate a config and describe its experiments"),
                       ("stats", "print every arm's counters"),
                       ("report", "the leading arm, shares and 95% intervals")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("config", metavar="CONFIG")
        if name == "stats":
            p.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        with mab.Engine(args.config) as engine:
            if args.command == "check":
                _check(engine)
            elif args.command == "stats":
                _stats(engine, args.json)
            else:
                _report(engine)
    except mab.MabError as e:
        print("python -m mab %s: %s" % (args.command, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

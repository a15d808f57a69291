"""python -m mab: the mab CLI's read-only commands, through the binding.

    python -m mab check CONFIG                  validate a config, describe its experiments
    python -m mab stats CONFIG [--json]         every arm's counters
    python -m mab report CONFIG [EXP] [--json] [--history N]
                                                who is winning, and how sure: the
                                                core's report (libmab's
                                                mab_report_get, as `mab report`)

They open CONFIG with its storage, as `mab check` and `mab stats` do (a
json_file store open in another process refuses: MAB_EBUSY). Errors are
printed as one line on stderr; the exit status is 1.
"""
import argparse
import json
import sys
import time
from typing import Any, List, Optional

import mab


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
        # The arms of the core's report: counters and the report's fields,
        # from one snapshot, as `mab stats --json` prints them.
        reports = {e.id: engine.report(e.id) for e in experiments}
        doc = {"experiments": {e.id: {"policy": e.policy, "arms": reports[e.id]["arms"],
                                      "rules": reports[e.id]["rules"]}
                               for e in experiments}}
        print(json.dumps(doc, separators=(",", ":")))
        return
    for e in experiments:
        print("experiment %s (policy %s)" % (e.id, e.policy))
        print("  %-10s %8s %8s %11s %9s" % ("arm", "pulls", "rewards", "reward_sum", "mean"))
        for a in engine.stats(e.id):
            print("  %-10s %8d %8d %11g %9.6f" % (a.arm_id, a.pulls, a.rewards, a.reward_sum,
                                                 a.mean))


_NOT_AVAILABLE = {"share_last_bucket": "share of traffic in the last bucket",
                  "history": "history of time buckets",
                  "holdout": "holdout comparison", "srm_p_value": "sample-ratio check",
                  "late_rewards": "late rewards"}


def _probability(p: float) -> str:
    """P(best) as libmab words it: 10^4 draws cannot tell 1 from 0.9999."""
    return ">0.999" if p >= 0.9995 else "<0.001" if p < 0.0005 else "%.3f" % p


def _rules_line(rules: Any) -> str:
    """The rules in force, worded as `mab report` words them."""
    line = "  rules: state " + rules["state"]
    if rules["state"] != "running":
        line += " (serving %s)" % (rules["serve"] or "the leader")
    line += ", floor %g" % rules["floor"] if rules["floor"] > 0 else ", floor none"
    line += (", burn-in %d pulls per arm" % rules["burn_in"] if rules["burn_in"]
             else ", burn-in none")
    h = rules["holdout"]
    line += (", holdout %g%% (%s)" % (100 * h["share"], "arm " + h["arm"] if h["arm"] else
                                     "uniform") if h else ", holdout none")
    w = rules["attribution_window"]
    return line + (", attribution window %d s" % w if w > 0 else ", attribution window none")


def _report(engine: "mab.Engine", only: Optional[str], as_json: bool,
            history: int = 0) -> None:
    ids = [e.id for e in engine.experiments()]
    if only is not None and only not in ids:
        raise mab.MabError(mab.ENOTFOUND, '%s: no experiment "%s"' % (engine.config_path, only))
    reports = [engine.report(i, history) for i in ids if only is None or i == only]
    if as_json:
        print(json.dumps({"experiments": {r["experiment"]: r for r in reports}},
                         separators=(",", ":")))
        return
    for n, r in enumerate(reports):
        params = {k: v for k, v in (r["policy_params"] or {}).items() if k != "plugin"}
        digits = 4 if r["reward_max"] - r["reward_min"] <= 1 else 2
        print("%sexperiment %s (policy %s, parameters %s)" % (
            "\n" if n else "", r["experiment"], r["policy"],
            json.dumps(params, separators=(",", ":"))))
        print("  %s posterior, %d draws; winner rule: P(best) >= %g and expected loss < %g" % (
            "Beta" if r["model"] == "beta" else "Normal", r["draws"],
            r["winner_rule"]["p_best"], r["winner_rule"]["expected_loss"]))
        if r["rules"] is not None:
            print(_rules_line(r["rules"]))
        rows = [("arm", "pulls", "mean", "95% interval", "P(best)", "expected loss", "share")]
        for arm, a in r["arms"].items():
            share = a["share_last_bucket"]
            rows.append((arm + (" *" if arm == r["leader"] else ""), str(a["pulls"]),
                         "%.*f" % (digits, a["mean"]),
                         "[%.*f, %.*f]" % (digits, a["ci_low"], digits, a["ci_high"]),
                         _probability(a["p_best"]), "%.2g" % a["expected_loss"],
                         "-" if share is None else "%.1f%%" % (100 * share)))
        widths = [max(len(row[c]) for row in rows) for c in range(7)]
        for row in rows:
            cells = [row[0].ljust(widths[0])] + [row[c].rjust(widths[c]) for c in range(1, 7)]
            print("  " + "  ".join(cells))
        if r["last_bucket_start"] is not None:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["last_bucket_start"]))
            print("  share: of the pulls of the bucket starting %s (%d s wide); history: %d buckets"
                  % (when, r["bucket_seconds"], len(r["history"] or [])))
        print("  " + r["recommendation"])
        h = r["holdout"]
        if h is not None and h["diff"] is None:
            print("  bandit minus holdout, reward per visitor: none yet (a group has fewer "
                  "than 2 visitors)")
        elif h is not None:
            def fixed(v):
                # C's printf writes "nan" where the interval has no value yet.
                return "nan" if v is None else "%.*f" % (digits, v)
            print("  bandit minus holdout, reward per visitor: %s [%s, %s]"
                  % (fixed(h["diff"]), fixed(h["diff_low"]), fixed(h["diff_high"])))
        if r["late_rewards"] is not None:
            print("  late rewards (refused by the attribution window): %d" % r["late_rewards"])
        if r["not_available"]:
            print("  not available: " + ", ".join(_NOT_AVAILABLE.get(k, k)
                                                   for k in r["not_available"]))
        if r.get("srm_status") is not None:
            print("  sample-ratio check: " + r["srm_status"])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mab", description=(
        "The mab CLI's check, stats and report, through the Python binding."))
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, text in (("check", "validate a config and describe its experiments"),
                       ("stats", "print every arm's counters"),
                       ("report", "who is winning, and how sure (P(best), expected loss)")):
        p = sub.add_parser(name, help=text, description=text)
        p.add_argument("config", metavar="CONFIG")
        if name == "report":
            p.add_argument("experiment", metavar="EXP", nargs="?",
                           help="one experiment (default: every one)")
            p.add_argument("--history", metavar="N", type=int, default=0,
                           help="time buckets of history in the JSON (default 24)")
        if name in ("stats", "report"):
            p.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        with mab.Engine(args.config) as engine:
            if args.command == "check":
                _check(engine)
            elif args.command == "stats":
                _stats(engine, args.json)
            else:
                _report(engine, args.experiment, args.json, args.history)
    except mab.MabError as e:
        print("python -m mab %s: %s" % (args.command, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

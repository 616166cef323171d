"""``hmctl policy test``: an InterfacePolicy's own tests as a table, or one question asked of
it (``--from``, ``--to``, ``--operation``). Kept light: no database, no QUIC."""

from __future__ import annotations

import argparse
import sys

from hypermesh.cli.render import error, table
from hypermesh.model.loader import load
from hypermesh.model.validate import build
from hypermesh.policy import OPERATIONS, PolicyEngine


def test(args: argparse.Namespace) -> int:
    loaded = load(args.files, sys.stdin.buffer)
    desired, problems = build(loaded)
    # Failing policy tests are what this command shows; every other problem stops it.
    others = [p for p in problems if "policy test" not in p.message]
    for problem in others:
        sys.stderr.write(f"{problem}\n")
    if others:
        error(f"{len(others)} problem{'s' if len(others) != 1 else ''} found")
        return 1
    policies = [r for r in desired if r.kind == "InterfacePolicy"]
    if args.policy:
        policies = [r for r in policies if r.name == args.policy]
    if not policies:
        error("no InterfacePolicy" + (f" named {args.policy!r}" if args.policy else "") + " found")
        return 1
    if args.caller or args.operation:
        if not (args.caller and args.operation):
            error("a question needs --from and --operation (and --to for a target node)")
            return 2
        if args.operation not in OPERATIONS:
            error(f"--operation must be one of {', '.join(OPERATIONS)}")
            return 2
        for policy in policies:
            engine = PolicyEngine.of(policy.spec, desired)
            decision = engine.decide(args.caller, args.target, args.operation)
            by = f"rule {decision.rule!r}" if decision.rule else "the default"
            limit = decision.rate_limit
            extra = f", at most {limit}" if limit else ""
            print(f"{policy.name}: {decision.action} ({by}{extra})")
        return 0
    failed = 0
    rows = []
    for policy in policies:
        for result in PolicyEngine.of(policy.spec, desired).run_tests():
            caller, target, operation = result.request
            failed += not result.passed
            rows.append(
                [
                    policy.name,
                    result.name,
                    caller,
                    target or "*",
                    operation,
                    result.expected,
                    result.decision.action,
                    result.decision.rule or "(default)",
                    "ok" if result.passed else "FAIL",
                ]
            )
    if rows:
        headers = ["POLICY", "TEST", "FROM", "TO", "OPERATION", "EXPECT", "GOT", "RULE", "RESULT"]
        sys.stdout.write(table(headers, rows))
    print(f"{len(rows) - failed} of {len(rows)} policy tests pass")
    return 1 if failed else 0

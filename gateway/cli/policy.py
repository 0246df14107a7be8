"""``xgate policy explain``: a dry run of the crypto policy for one sender and recipient."""

from __future__ import annotations

import argparse
import json

from crypto.at_rest import MasterKey
from gateway.cli.common import command_session, settings_from_args
from gateway.clock import system_clock
from gateway.policy.explain import explain


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    policy = commands.add_parser("policy", help="inspect the crypto policy",
                                 description="Inspect the partner and crypto policy.")
    sub = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")
    ex = sub.add_parser("explain", help="what would happen to a message from A to B",
                        description="Dry run: print what the gateway would do with a message "
                                    "from one address to another, and why. Nothing is "
                                    "changed.")
    ex.add_argument("--from", dest="sender", required=True, metavar="ADDRESS")
    ex.add_argument("--to", dest="recipient", required=True, metavar="ADDRESS")
    ex.add_argument("--json", action="store_true", help="machine-readable output")
    ex.set_defaults(handler=cmd_policy_explain)


def cmd_policy_explain(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    master_key = MasterKey.load(settings.resolve(settings.storage.master_key_file))
    with command_session(settings, read_only=True) as session:
        result = explain(session, settings, master_key, args.sender, args.recipient,
                         system_clock())
    if args.json:
        print(json.dumps(result.as_json(), indent=2))
        return 0
    print(f"{args.sender} -> {args.recipient}: {result.direction}, verdict: {result.verdict}")
    for step in result.steps:
        print(f"  - {step}")
    return 0

"""``xgate partner``: partner organisations, their domains and addresses, their policies."""

from __future__ import annotations

import argparse

from gateway.cli.common import command_session, settings_from_args
from gateway.cli.keys import actor_of, print_json, print_table
from gateway.clock import system_clock
from gateway.keydir import partners
from gateway.keydir.models import InvalidSignature
from gateway.keydir.views import partner_view
from gateway.settings import OutboundPolicy

_POLICIES = [p.value for p in OutboundPolicy]
_INVALID_SIGNATURE = [a.value for a in InvalidSignature]
_INVALID_SIGNATURE_HELP = (
    "mail from the partner whose signature is present but fails (altered content, an expired, "
    "revoked or untrusted certificate, an unknown key): quarantine it for an admin (the "
    "default), or warn: deliver it with a subject prefix and a warning at the top of the "
    "message")


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "partner", help="manage partner organisations and their policies",
        description="Partner organisations (youth offices, courts, counselling services ...): "
                    "the domains and addresses that are theirs, and what they demand of the "
                    "mail exchanged with them.")
    sub = parser.add_subparsers(dest="partner_command", required=True, metavar="COMMAND")

    add = sub.add_parser("add", help="add a partner",
                         description="Add a partner with its domains and addresses. An exact "
                                     "address beats a domain; a domain does not cover its "
                                     "subdomains.")
    add.add_argument("name", metavar="NAME")
    add.add_argument("--domain", action="append", default=[], metavar="DOMAIN",
                     help="a whole domain of the partner (repeatable)")
    add.add_argument("--address", action="append", default=[], metavar="ADDRESS",
                     help="one address of the partner (repeatable)")
    add.add_argument("--outbound", choices=_POLICIES, default=OutboundPolicy.EITHER.value,
                     help="what mail to the partner needs (default: either, i.e. S/MIME or "
                          "OpenPGP, whichever key exists; plaintext only with "
                          "--non-sensitive)")
    add.add_argument("--gcm", action="store_true",
                     help="the partner reads AES-256-GCM S/MIME (else AES-256-CBC is sent)")
    add.add_argument("--pgp-inline", action="store_true",
                     help="send OpenPGP as inline PGP where the message is plain text (for "
                          "clients without PGP/MIME); PGP/MIME otherwise")
    add.add_argument("--require-encryption", action="store_true",
                     help="refuse unencrypted mail from the partner")
    add.add_argument("--require-signature", action="store_true",
                     help="refuse mail from the partner without a valid signature")
    add.add_argument("--invalid-signature", choices=_INVALID_SIGNATURE,
                     default=InvalidSignature.QUARANTINE.value, help=_INVALID_SIGNATURE_HELP)
    add.add_argument("--non-sensitive", action="store_true",
                     help="the partner receives nothing sensitive (needed for plaintext)")
    add.add_argument("--note", default="", help="free text for the admins")
    _actor(add)
    add.set_defaults(handler=cmd_add)

    change = sub.add_parser("set", help="change a partner",
                            description="Change a partner's policy, name or addresses; what "
                                        "is not given stays as it is.")
    change.add_argument("name", metavar="NAME")
    change.add_argument("--rename", metavar="NEW_NAME")
    change.add_argument("--outbound", choices=_POLICIES)
    flag = argparse.BooleanOptionalAction
    change.add_argument("--gcm", action=flag, default=None)
    change.add_argument("--pgp-inline", action=flag, default=None)
    change.add_argument("--require-encryption", action=flag, default=None)
    change.add_argument("--require-signature", action=flag, default=None)
    change.add_argument("--invalid-signature", choices=_INVALID_SIGNATURE,
                        help=_INVALID_SIGNATURE_HELP)
    change.add_argument("--non-sensitive", action=flag, default=None)
    change.add_argument("--note")
    change.add_argument("--add-domain", action="append", default=[], metavar="DOMAIN")
    change.add_argument("--add-address", action="append", default=[], metavar="ADDRESS")
    change.add_argument("--remove", action="append", default=[], metavar="DOMAIN_OR_ADDRESS",
                        help="remove a domain or address from the partner (repeatable)")
    _actor(change)
    change.set_defaults(handler=cmd_set)

    ls = sub.add_parser("list", help="list partners", description="List partners.")
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    ls.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="show a partner", description="Show one partner.")
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=cmd_show)

    remove = sub.add_parser("remove", help="remove a partner",
                            description="Remove a partner with its domains and addresses. "
                                        "Its keys stay in the directory, without a partner.")
    remove.add_argument("name", metavar="NAME")
    _actor(remove)
    remove.set_defaults(handler=cmd_remove)


def _actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", metavar="NAME",
                        help="who to record in the audit trail (default: the operating "
                             "system user)")


def cmd_add(args: argparse.Namespace) -> int:
    # Checked before the database is opened; the rule is the key directory's, as for the
    # console's form.
    patterns = partners.require_patterns([*args.domain, *args.address])
    settings = settings_from_args(args)
    with command_session(settings) as session:
        partner = partners.add_partner(
            session, args.name, actor=actor_of(args), now=system_clock(),
            patterns=patterns,
            outbound_policy=OutboundPolicy(args.outbound), smime_gcm=args.gcm,
            openpgp_inline=args.pgp_inline,
            inbound_require_encryption=args.require_encryption,
            inbound_require_signature=args.require_signature,
            inbound_invalid_signature=InvalidSignature(args.invalid_signature),
            non_sensitive=args.non_sensitive, note=args.note)
        view = partner_view(partner)
    print(f"partner {view['name']} added: {', '.join(view['patterns'])}; outbound "
          f"{view['outbound_policy']}; invalid signature: {view['inbound_invalid_signature']}")
    return 0


def cmd_set(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    actor = actor_of(args)
    now = system_clock()
    with command_session(settings) as session:
        partner = partners.update_partner(
            session, args.name, actor=actor, now=now, new_name=args.rename,
            outbound_policy=OutboundPolicy(args.outbound) if args.outbound else None,
            smime_gcm=args.gcm, openpgp_inline=args.pgp_inline,
            inbound_require_encryption=args.require_encryption,
            inbound_require_signature=args.require_signature,
            inbound_invalid_signature=(InvalidSignature(args.invalid_signature)
                                       if args.invalid_signature else None),
            non_sensitive=args.non_sensitive, note=args.note)
        name = partner.name
        for pattern in [*args.add_domain, *args.add_address]:
            partners.add_partner_pattern(session, name, pattern, actor=actor, now=now)
        for pattern in args.remove:
            partners.remove_partner_pattern(session, name, pattern, actor=actor, now=now)
        view = partner_view(partners.get_partner(session, name))
    _print_partner(view)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        views = [partner_view(p) for p in partners.list_partners(session)]
    if args.json:
        print_json(views)
        return 0
    if not views:
        print("no partners")
        return 0
    print_table(["NAME", "OUTBOUND", "INBOUND", "INVALID SIGNATURE", "DOMAINS AND ADDRESSES"],
                [[v["name"], v["outbound_policy"] + (" (gcm)" if v["smime_gcm"] else ""),
                  _inbound(v), v["inbound_invalid_signature"], ", ".join(v["patterns"])]
                 for v in views])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        view = partner_view(partners.get_partner(session, args.name))
    if args.json:
        print_json(view)
    else:
        _print_partner(view)
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        partners.delete_partner(session, args.name, actor=actor_of(args))
    print(f"partner {args.name.strip()} removed; its keys stay in the directory")
    return 0


def _inbound(view: dict[str, object]) -> str:
    needs = [what for what, key in (("encryption", "inbound_require_encryption"),
                                    ("signature", "inbound_require_signature")) if view[key]]
    return " + ".join(needs) if needs else "-"


_INVALID_SIGNATURE_SHOWN = {
    InvalidSignature.QUARANTINE.value: "quarantine (a signature that fails is kept for an "
                                       "admin)",
    InvalidSignature.WARN.value: "warn (delivered with a subject prefix and a warning at the "
                                 "top)",
}


def _print_partner(view: dict[str, object]) -> None:
    yes = {True: "yes", False: "no"}
    patterns = view["patterns"]
    assert isinstance(patterns, list)
    rows = [("name", view["name"]), ("addresses", ", ".join(patterns) or "-"),
            ("outbound", view["outbound_policy"]),
            ("S/MIME GCM", yes[bool(view["smime_gcm"])]),
            ("inline PGP", yes[bool(view["openpgp_inline"])]),
            ("inbound needs", _inbound(view)),
            ("bad signature", _INVALID_SIGNATURE_SHOWN[str(view["inbound_invalid_signature"])]),
            ("non-sensitive", yes[bool(view["non_sensitive"])]),
            ("note", view["note"] or "-"),
            ("created", f"{view['created_at']} by {view['created_by']}"),
            ("updated", f"{view['updated_at']} by {view['updated_by']}")]
    for label, value in rows:
        print(f"{label + ':':<15}{value}")

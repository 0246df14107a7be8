"""``xgate keys``: partners' certificates and OpenPGP keys, and the office's own keys."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

from crypto.at_rest import MasterKey
from gateway.cli.common import (
    CliError,
    command_session,
    operator_name,
    positive_int,
    settings_from_args,
)
from gateway.clock import system_clock
from gateway.keydir import keys, own_keys, own_openpgp, publish, wkd_lookup
from gateway.keydir.expiry import expiring
from gateway.keydir.models import KeyKind, KeySource, KeyStatus
from gateway.keydir.views import (
    expiring_view,
    imported_view,
    key_view,
    own_key_view,
    spoken_fingerprint,
)
from gateway.settings import Settings

# A string: argparse's class is not subscriptable at run time on Python 3.11.
Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def register(commands: Subparsers) -> None:
    parser = commands.add_parser(
        "keys", help="manage partner certificates and keys, and the office's own keys",
        description="The key and certificate directory: partners' S/MIME certificates and "
                    "OpenPGP keys (only approved ones are used to encrypt), and the office's "
                    "own keys.")
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")

    imp = sub.add_parser(
        "import", help="import partner certificates or OpenPGP public keys",
        description="Import a PEM or DER certificate (several PEM certificates in one file "
                    "are fine), a PKCS#7 bundle, or an OpenPGP public key. Keys are pending "
                    "until approved, unless --approve is given.")
    imp.add_argument("file", metavar="FILE", type=Path)
    imp.add_argument("--partner", metavar="NAME",
                     help="the partner the keys belong to (default: the partner whose domain "
                          "or address the key names, if any)")
    imp.add_argument("--approve", action="store_true",
                     help="approve the keys now (you checked them, e.g. the fingerprint by "
                          "phone); also approves a known pending key")
    _actor(imp)
    imp.set_defaults(handler=cmd_import)

    look = sub.add_parser(
        "lookup", help="fetch a partner's OpenPGP key from its Web Key Directory",
        description="Look the address up in its domain's Web Key Directory (HTTPS, the "
                    "advanced method first, then the direct one) and import the key it "
                    "publishes, if the key names that address. Pending unless --approve.")
    look.add_argument("address", metavar="ADDRESS")
    look.add_argument("--partner", metavar="NAME", help="the partner the key belongs to")
    look.add_argument("--approve", action="store_true", help="approve the key now")
    _actor(look)
    look.set_defaults(handler=cmd_lookup)

    ls = sub.add_parser("list", help="list partner keys",
                        description="List partner keys, optionally by status or partner.")
    ls.add_argument("--status", choices=[s.value for s in KeyStatus])
    ls.add_argument("--partner", metavar="NAME")
    _json(ls)
    ls.set_defaults(handler=cmd_list)

    show = sub.add_parser("show", help="show one partner key with its provenance",
                          description="Show a partner key: what it names, where it came from, "
                                      "who decided on it.")
    show.add_argument("id", metavar="ID", type=positive_int)
    _json(show)
    show.add_argument("--pem", action="store_true",
                      help="also print the certificate (PEM) or the OpenPGP key")
    show.set_defaults(handler=cmd_show)

    approve = sub.add_parser(
        "approve", help="use the key to encrypt from now on",
        description="Approve a partner key: use the key to encrypt from now on. Shows the "
                    "fingerprint first: compare it with the partner by phone. A self-signed "
                    "S/MIME certificate is pinned by this: exactly this certificate is "
                    "trusted for the addresses it names, and its signatures count as valid. "
                    "On a terminal, asks before approving.")
    approve.add_argument("id", metavar="ID", type=positive_int)
    approve.add_argument("--yes", action="store_true",
                         help="do not ask (the fingerprint was compared already)")
    _actor(approve)
    approve.set_defaults(handler=cmd_approve)
    for name, func, text in (
            ("reject", keys.reject_key, "refuse a pending key"),
            ("revoke", keys.revoke_key, "stop using a key for good")):
        decide = sub.add_parser(name, help=text, description=f"{name.capitalize()} a partner "
                                                             f"key: {text}.")
        decide.add_argument("id", metavar="ID", type=positive_int)
        _actor(decide)
        decide.set_defaults(handler=cmd_decide, decide=func, verb=name)

    exp = sub.add_parser(
        "expiring", help="list keys that expire soon",
        description="List approved partner keys and the office's own keys whose validity "
                    "ends within the next N days. Exit status 0 whether or not any do.")
    exp.add_argument("--days", type=positive_int, metavar="N",
                     help="look this many days ahead (default: crypto.expiry_warning_days)")
    _json(exp)
    exp.set_defaults(handler=cmd_expiring)

    _register_own(sub)


def _register_own(sub: Subparsers) -> None:
    own = sub.add_parser("own", help="manage the office's own keys",
                         description="The office's own keys: several per address for "
                                     "rollover; every key not retired is tried for "
                                     "decryption. Private keys are sealed with the master key.")
    osub = own.add_subparsers(dest="own_command", required=True, metavar="COMMAND")
    gen = osub.add_parser("generate", help="generate an OpenPGP key",
                          description="Generate an OpenPGP key for an address.")
    gen.add_argument("--address", required=True, metavar="ADDRESS")
    gen.add_argument("--algorithm", default="cv25519", choices=own_openpgp.ALGORITHMS,
                     help="default: cv25519")
    _actor(gen)
    gen.set_defaults(handler=cmd_own_generate)

    imp = osub.add_parser(
        "import", help="import an S/MIME certificate with its private key, or an OpenPGP "
                       "secret key",
        description="Import an own key for ADDRESS (or @domain for an office-wide key): "
                    "a PKCS#12 file, a PEM certificate and PEM key, or an armored OpenPGP "
                    "secret key. RSA keys need at least 3072 bits (BSI TR-02102-1).")
    imp.add_argument("--address", required=True, metavar="ADDRESS")
    source = imp.add_mutually_exclusive_group(required=True)
    source.add_argument("--pkcs12", type=Path, metavar="FILE")
    source.add_argument("--cert", type=Path, metavar="PEM", help="with --key")
    source.add_argument("--openpgp", type=Path, metavar="FILE",
                        help="an armored OpenPGP secret key without passphrase")
    imp.add_argument("--key", type=Path, metavar="PEM", help="the private key for --cert")
    imp.add_argument("--password-file", type=Path, metavar="FILE",
                     help="the password of the PKCS#12 file or PEM key (first line)")
    _actor(imp)
    imp.set_defaults(handler=cmd_own_import)

    ls = osub.add_parser("list", help="list own keys", description="List the office's keys.")
    ls.add_argument("--address", metavar="ADDRESS")
    _json(ls)
    ls.set_defaults(handler=cmd_own_list)

    export = osub.add_parser(
        "export", help="write the office's public keys for partners and citizens",
        description="Write the office's public keys in use (not retired, valid now): S/MIME "
                    "certificates as PEM, each followed by the intermediate certificates it "
                    "was imported with, then armored OpenPGP public keys. Never private "
                    "material. OpenPGP keys are also published in the office's Web Key "
                    "Directory (see README).")
    export.add_argument("--address", metavar="ADDRESS",
                        help="only this address's keys (or @domain for the office-wide key)")
    export.add_argument("--kind", choices=[k.value for k in KeyKind],
                        help="only certificates (smime) or only OpenPGP keys")
    export.add_argument("--out", type=Path, metavar="FILE",
                        help="write to FILE instead of standard output")
    export.set_defaults(handler=cmd_own_export)

    retire = osub.add_parser("retire", help="stop using an own key",
                             description="Retire an own key: it neither signs nor decrypts "
                                         "from now on.")
    retire.add_argument("id", metavar="ID", type=positive_int)
    _actor(retire)
    retire.set_defaults(handler=cmd_own_retire)


def _actor(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--actor", metavar="NAME",
                        help="who to record in the audit trail (default: the operating "
                             "system user, the one behind sudo if any)")


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def actor_of(args: argparse.Namespace) -> str:
    actor: str | None = args.actor
    if actor is not None and not actor.strip():
        raise CliError("--actor must not be empty")
    return actor.strip() if actor else operator_name()


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def read_file(path: Path) -> bytes:
    return path.read_bytes()  # OSError becomes one line in gateway.cli.main


def _day(value: str | None) -> str:
    return value[:10] if value else "-"


def _short(fingerprint: str) -> str:
    return fingerprint[:16] + "…" if len(fingerprint) > 17 else fingerprint


# --- partner keys ---------------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    data = read_file(args.file)
    with command_session(settings) as session:
        results = keys.import_partner_keys(
            session, data, actor=actor_of(args), source=KeySource.IMPORT,
            source_detail=str(args.file), partner=args.partner, approve=args.approve,
            now=system_clock())
        views = [imported_view(r) for r in results]
    for view in views:
        outcome = {"added": "added", "approved": "approved (was known)",
                   "updated": "known, updated to this newer copy",
                   "unchanged": "known already, unchanged"}[view["outcome"]]
        partner = f"partner {view['partner']}" if view["partner"] else "no partner"
        print(f"key {view['id']}: {outcome}; {view['kind']} {view['status']}, {partner}, "
              f"{', '.join(view['addresses'])}, valid until {_day(view['not_after'])}")
        print(f"  {view['fingerprint']}  {view['subject'].splitlines()[0]}")
        if view["warning"]:
            print(f"  warning: {view['warning']}")
        if not view["can_encrypt"]:
            print("  note: this key cannot be used to encrypt (signatures only)")
        if view["self_signed"]:
            print(f"  note: {view['trust']}")
            spoken = spoken_fingerprint(KeyKind.SMIME, view["fingerprint"])
            print(f"  SHA-256 fingerprint: {spoken}")
    return 0


def cmd_lookup(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    # Fetch before opening a transaction: the network may take a while.
    found = wkd_lookup.fetch_for(settings, args.address)
    with command_session(settings) as session:
        results = wkd_lookup.import_found(session, found, args.address, actor=actor_of(args),
                                          partner=args.partner, approve=args.approve,
                                          now=system_clock())
        views = [imported_view(r) for r in results]
    print(f"found at {found.url}")
    for view in views:
        print(f"key {view['id']}: {view['outcome']}; {view['kind']} {view['status']}, "
              f"{', '.join(view['addresses'])}, valid until {_day(view['not_after'])}")
        print(f"  {view['fingerprint']}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    status = KeyStatus(args.status) if args.status else None
    with command_session(settings, read_only=True) as session:
        views = [key_view(k) for k in keys.list_keys(session, status, args.partner)]
    if args.json:
        print_json(views)
        return 0
    if not views:
        print("no partner keys")
        return 0
    print_table(["ID", "KIND", "STATUS", "PARTNER", "VALID UNTIL", "FINGERPRINT", "ADDRESSES"],
                [[v["id"], v["kind"],
                  v["status"] + (" pinned" if v["pinned"] else "")
                  + (" (!)" if v["warning"] else ""),
                  v["partner"] or "-", _day(v["not_after"]), _short(v["fingerprint"]),
                  ", ".join(v["addresses"])] for v in views])
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        view = key_view(keys.get_key(session, args.id), with_data=args.json or args.pem)
    if args.json:
        print_json(view)
        return 0
    labels = [("id", "id"), ("kind", "kind"), ("status", "status"), ("partner", "partner"),
              ("fingerprint", "fingerprint"), ("addresses", "addresses"),
              ("subject", "subject"), ("issuer", "issuer"), ("trust", "trust"),
              ("algorithm", "algorithm"),
              ("can encrypt", "can_encrypt"), ("warning", "warning"),
              ("valid from", "not_before"), ("valid until", "not_after"),
              ("source", "source"), ("source detail", "source_detail"),
              ("added by", "added_by"), ("added at", "added_at"),
              ("decided by", "decided_by"), ("decided at", "decided_at")]
    for label, field in labels:
        value = view[field]
        if isinstance(value, list):
            value = ", ".join(value)
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, str) and "\n" in value:
            value = value.replace("\n", "; ")
        print(f"{label + ':':<15}{'-' if value is None or value == '' else value}")
    if args.pem:
        print(view["data"].rstrip())
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        view = key_view(keys.get_key(session, args.id))
    if view["status"] in (KeyStatus.PENDING, KeyStatus.REJECTED):
        # Before, not after: the comparison is what the approval rests on.
        _show_for_phone(view)
        if sys.stdin.isatty() and not args.yes:
            answer = input("Approve this key? [y/N] ")
            if answer.strip().lower() not in ("y", "yes", "j", "ja"):
                raise CliError(f"key {args.id} not approved")
    with command_session(settings) as session:
        view = key_view(keys.approve_key(session, args.id, actor_of(args), system_clock()))
    print(f"key {view['id']} ({view['kind']} {_short(view['fingerprint'])}, "
          f"{', '.join(view['addresses'])}) is {view['status']} now"
          + (", pinned" if view["pinned"] else ""))
    return 0


def _show_for_phone(view: dict[str, Any]) -> None:
    kind = KeyKind(view["kind"])
    what = "S/MIME certificate" if kind is KeyKind.SMIME else "OpenPGP key"
    print(f"key {view['id']}: {what} for {', '.join(view['addresses'])}")
    print(f"  subject: {view['subject'].splitlines()[0]}")
    if view["self_signed"]:
        print("  self-signed: no CA vouches for it; approving pins exactly this certificate")
    label = "SHA-256 fingerprint" if kind is KeyKind.SMIME else "fingerprint"
    print(f"  {label}: {spoken_fingerprint(kind, view['fingerprint'])}")
    print("  Compare it with the partner by phone (a number you know, not one from the "
          "mail or the certificate) before approving.")


def cmd_decide(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        key = args.decide(session, args.id, actor_of(args), system_clock())
        view = key_view(key)
    print(f"key {view['id']} ({view['kind']} {_short(view['fingerprint'])}, "
          f"{', '.join(view['addresses'])}) is {view['status']} now")
    return 0


def cmd_expiring(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    days: int = args.days or settings.crypto.expiry_warning_days
    with command_session(settings, read_only=True) as session:
        found = expiring(session, system_clock(), days)
    if args.json:
        print_json([expiring_view(k) for k in found])
        return 0
    if not found:
        print(f"no keys expire in the next {days} days")
        return 0
    print_table(["OWNER", "ID", "KIND", "HOLDER", "EXPIRES", "DAYS", "ADDRESSES"],
                [[k.owner, k.id, k.kind, k.holder or "-", f"{k.not_after:%Y-%m-%d}",
                  k.days_left, ", ".join(k.addresses)] for k in found])
    return 0


# --- own keys -------------------------------------------------------------------------------


def master_key_of(settings: Settings) -> MasterKey:
    return MasterKey.load(settings.resolve(settings.storage.master_key_file))


def _password(path: Path | None) -> bytes | None:
    if path is None:
        return None
    lines = path.read_bytes().splitlines()
    return lines[0] if lines else b""


def cmd_own_generate(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    master = master_key_of(settings)
    with command_session(settings) as session:
        key = own_openpgp.generate_own_openpgp(session, master, args.address,
                                           algorithm=args.algorithm, actor=actor_of(args),
                                           now=system_clock())
        view = own_key_view(key)
    print(f"own key {view['id']}: generated {args.algorithm} OpenPGP key for "
          f"{view['address']}, valid until {_day(view['not_after'])}")
    print(f"  {view['fingerprint']}")
    return 0


def cmd_own_import(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    if args.cert is not None and args.key is None:
        raise CliError("--cert needs --key (the certificate's private key, PEM)")
    if args.key is not None and args.cert is None:
        raise CliError("--key goes with --cert")
    password = _password(args.password_file)
    master = master_key_of(settings)
    actor = actor_of(args)
    with command_session(settings) as session:
        if args.openpgp is not None:
            key = own_openpgp.import_own_openpgp(session, master, args.address,
                                             read_file(args.openpgp), actor=actor,
                                             now=system_clock())
        else:
            data = (read_file(args.pkcs12) if args.pkcs12 is not None
                    else read_file(args.cert) + b"\n" + read_file(args.key))
            key = own_keys.import_own_smime(session, master, args.address, data,
                                            password=password, actor=actor,
                                            now=system_clock())
        view = own_key_view(key)
    print(f"own key {view['id']}: imported {view['kind']} {view['algorithm']} key for "
          f"{view['address']}, valid until {_day(view['not_after'])}")
    print(f"  {view['fingerprint']}  {view['subject'].splitlines()[0]}")
    if not view["can_sign"]:
        print("  note: this key cannot sign (decryption only)")
    if view["intermediates"]:
        count = view["intermediates"]
        print(f"  kept {count} intermediate certificate{'s' if count != 1 else ''} "
              "(sent with signatures and in the export)")
    return 0


def cmd_own_list(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings, read_only=True) as session:
        views = [own_key_view(k) for k in own_keys.list_own_keys(session, args.address)]
    if args.json:
        print_json(views)
        return 0
    if not views:
        print("no own keys")
        return 0
    print_table(["ID", "ADDRESS", "KIND", "ALGORITHM", "VALID UNTIL", "STATE", "FINGERPRINT"],
                [[v["id"], v["address"], v["kind"], v["algorithm"], _day(v["not_after"]),
                  "retired" if v["retired"] else "in use", _short(v["fingerprint"])]
                 for v in views])
    return 0


def cmd_own_export(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    kind = KeyKind(args.kind) if args.kind else None
    with command_session(settings, read_only=True) as session:
        found, data = publish.export_own_keys(session, system_clock(), address=args.address,
                                              kind=kind)
        views = [own_key_view(k) for k in found]
    if args.out is None:
        sys.stdout.write(data.decode("ascii"))
        return 0
    args.out.write_bytes(data)  # OSError becomes one line in gateway.cli.main
    print(f"wrote {len(views)} public key{'s' if len(views) != 1 else ''} to {args.out}")
    for view in views:
        print(f"  own key {view['id']}: {view['kind']} {view['address']}, valid until "
              f"{_day(view['not_after'])}, {view['fingerprint']}")
    return 0


def cmd_own_retire(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    with command_session(settings) as session:
        view = own_key_view(own_keys.retire_own_key(session, args.id, actor=actor_of(args),
                                                    now=system_clock()))
    print(f"own key {view['id']} ({view['address']}, {view['kind']}) retired; it neither "
          "signs nor decrypts any more")
    return 0

"""Mailbox members (lead, agent): the library the web's rights ask, and ``xgate mailbox
member``; receipt and signature settings through ``xgate mailbox set``."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from gateway.db import read_scope, session_scope
from gateway.services import Services
from gateway.settings import load_settings
from gateway.staff.users import add_user
from mailboxes.directory import MailboxError, add_mailbox, find_mailbox
from mailboxes.members import add_member, list_members, mailboxes_of, remove_member, role_in
from mailboxes.models import MailboxMember, MemberRole
from mailboxes.outreach import set_outreach
from tests.support.cli import Cli
from tests.support.db import opened

PASSWORD = "a long enough passphrase 1"


def _setup(services: Services) -> tuple[int, int, int, int]:
    with session_scope(services.sessions) as s:
        kita = add_mailbox(s, "kita@jugendamt.example", "Kita").id
        asd = add_mailbox(s, "asd@jugendamt.example", "ASD").id
        anna = add_user(s, "anna", PASSWORD).id
        ben = add_user(s, "ben", PASSWORD).id
        return kita, asd, anna, ben


def test_roles_and_mailboxes_of_a_user(services: Services) -> None:
    kita, asd, anna, ben = _setup(services)
    now = services.clock()
    with session_scope(services.sessions) as s:
        assert add_member(s, "kita@jugendamt.example", "anna", MemberRole.LEAD, actor="t",
                          now=now)
        assert add_member(s, "KITA@jugendamt.example", "ben", MemberRole.AGENT, actor="t",
                          now=now)
        assert add_member(s, "asd@jugendamt.example", "anna", MemberRole.AGENT, actor="t",
                          now=now)
        assert not add_member(s, "asd@jugendamt.example", "anna", MemberRole.AGENT,
                              actor="t", now=now)
    with read_scope(services.sessions) as s:
        assert role_in(s, anna, kita) == MemberRole.LEAD
        assert role_in(s, ben, kita) == MemberRole.AGENT
        assert role_in(s, ben, asd) is None
        assert [(m.address, r) for m, r in mailboxes_of(s, anna)] == [
            ("asd@jugendamt.example", MemberRole.AGENT),
            ("kita@jugendamt.example", MemberRole.LEAD)]
        assert mailboxes_of(s, ben)[0][0].id == kita
        assert [(m.username, m.role) for m in list_members(s, "kita@jugendamt.example")] == [
            ("anna", MemberRole.LEAD), ("ben", MemberRole.AGENT)]
    with session_scope(services.sessions) as s:
        assert add_member(s, "kita@jugendamt.example", "ben", MemberRole.LEAD, actor="t",
                          now=now)
        assert remove_member(s, "kita@jugendamt.example", "anna", actor="t")
        assert not remove_member(s, "kita@jugendamt.example", "anna", actor="t")
    with read_scope(services.sessions) as s:
        assert role_in(s, anna, kita) is None
        assert role_in(s, ben, kita) == MemberRole.LEAD
        assert len(list(s.scalars(select(MailboxMember)))) == 2


def test_unknown_mailbox_or_user_is_a_clear_error(services: Services) -> None:
    _setup(services)
    with session_scope(services.sessions) as s:
        with pytest.raises(MailboxError, match=r"no mailbox nowhere@jugendamt\.example"):
            add_member(s, "nowhere@jugendamt.example", "anna", MemberRole.LEAD, actor="t",
                       now=services.clock())
        with pytest.raises(MailboxError, match="no staff user 'zoe'"):
            add_member(s, "kita@jugendamt.example", "zoe", MemberRole.LEAD, actor="t",
                       now=services.clock())


def test_receipt_and_signature_settings(services: Services) -> None:
    _setup(services)
    with session_scope(services.sessions) as s:
        with pytest.raises(MailboxError, match=r"\{ticket\}"):
            set_outreach(s, "kita@jugendamt.example", actor="t", receipt_template="Danke.")
        changes = set_outreach(s, "kita@jugendamt.example", actor="t", receipt_enabled=False,
                               receipt_template="Danke, Vorgang {ticket}.",
                               signature="Ihr Kita-Team\r\nJugendamt")
        assert set(changes) == {"receipt", "receipt_template", "signature"}
    with read_scope(services.sessions) as s:
        box = find_mailbox(s, "kita@jugendamt.example")
        assert box is not None
        assert not box.receipt_enabled
        assert box.receipt_template == "Danke, Vorgang {ticket}."
        assert box.signature == "Ihr Kita-Team\nJugendamt"


def test_cli_member_add_list_remove(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    cli("mailbox", "add", "kita@jugendamt.example", "--name", "Kita")
    with opened(load_settings(cli.config)) as sessions, session_scope(sessions) as s:
        add_user(s, "anna", PASSWORD)
    assert cli("mailbox", "member", "add", "kita@jugendamt.example", "anna", "--role",
               "lead")[1].strip() == "anna is lead of kita@jugendamt.example"
    assert cli("mailbox", "member", "list", "kita@jugendamt.example")[1].startswith(
        "anna  lead")
    assert "unknown role 'boss'" in cli.fails("mailbox", "member", "add",
                                              "kita@jugendamt.example", "anna", "--role",
                                              "boss")
    assert cli.fails("mailbox", "member", "add", "kita@jugendamt.example",
                     "zoe") == "no staff user 'zoe'"
    cli("mailbox", "member", "remove", "kita@jugendamt.example", "anna")
    assert cli.fails("mailbox", "member", "remove", "kita@jugendamt.example",
                     "anna") == "anna is no member of kita@jugendamt.example"
    template = cli.file("receipt.txt", "Eingang bestätigt: {ticket}".encode())
    out = cli("mailbox", "set", "kita@jugendamt.example", "--no-receipt", "--receipt-text",
              template)[1]
    assert "receipt True -> False" in out
    actions = [a for _, a in cli.audit_actions()]
    assert actions.count("mailbox-member-added") == 1
    assert actions.count("mailbox-member-removed") == 1
    assert actions[-1] == "mailbox-changed"

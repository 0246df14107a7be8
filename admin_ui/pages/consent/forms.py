"""The consent register's forms as typed values: what the user typed (shown again with a
refusal) and the library's input made from it. The library judges the content
(gateway.consent.records.validate); here only what a form field cannot say by itself: a
date that is no date, a mailbox not chosen."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from starlette.datastructures import FormData

from gateway.consent.errors import ConsentError
from gateway.consent.records import ReleaseInput, VersionView
from gateway.policy.consent import GRANTOR_ROLES, RecipientRef


def text_of(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def _lines(text: str) -> tuple[str, ...]:
    return tuple(line.strip() for line in text.splitlines() if line.strip())


@dataclass
class ReleaseForm:
    """The release form's fields as typed (lists one entry a line)."""

    mailbox: str = ""
    case: str = ""
    data_subjects: str = ""
    grantor_name: str = ""
    grantor_role: str = GRANTOR_ROLES[0]
    categories: list[str] = field(default_factory=list)
    partners: str = ""
    addresses: str = ""
    purpose: str = ""
    valid_from: str = ""
    valid_until: str = ""
    note: str = ""
    expected_version: str = ""

    @classmethod
    def read(cls, form: FormData) -> ReleaseForm:
        return cls(
            mailbox=text_of(form, "mailbox"), case=text_of(form, "case"),
            data_subjects=text_of(form, "data_subjects"),
            grantor_name=text_of(form, "grantor_name"),
            grantor_role=text_of(form, "grantor_role"),
            categories=[v for v in form.getlist("categories") if isinstance(v, str)],
            partners=text_of(form, "partners"), addresses=text_of(form, "addresses"),
            purpose=text_of(form, "purpose"), valid_from=text_of(form, "valid_from"),
            valid_until=text_of(form, "valid_until"), note=text_of(form, "note"),
            expected_version=text_of(form, "expected_version"))

    @classmethod
    def of_version(cls, view: VersionView) -> ReleaseForm:
        """The form filled with a version, for a change."""
        r = view.release
        return cls(case=r.case, data_subjects="\n".join(r.data_subjects),
                   grantor_name=r.granted_by.name, grantor_role=r.granted_by.role,
                   categories=sorted(r.categories),
                   partners="\n".join(x.value for x in r.recipients if x.kind == "partner"),
                   addresses="\n".join(x.value for x in r.recipients if x.kind == "address"),
                   purpose=r.purpose, valid_from=r.valid_from.isoformat(),
                   valid_until=r.valid_until.isoformat(), expected_version=str(r.version))

    def release_input(self) -> ReleaseInput:
        recipients = tuple([RecipientRef("partner", p) for p in _lines(self.partners)]
                           + [RecipientRef("address", a) for a in _lines(self.addresses)])
        return ReleaseInput(
            case=self.case, data_subjects=_lines(self.data_subjects),
            grantor_name=self.grantor_name, grantor_role=self.grantor_role,
            categories=tuple(self.categories), recipients=recipients, purpose=self.purpose,
            valid_from=day(self.valid_from, "valid_from"),
            valid_until=day(self.valid_until, "valid_until"), note=self.note)

    def version_expected(self) -> int | None:
        text = self.expected_version.strip()
        return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else None


def day(text: str, name: str) -> date:
    """A date field (YYYY-MM-DD, as a browser's date input sends it), or ConsentError."""
    try:
        if len(text.strip()) == 10:
            return date.fromisoformat(text.strip())
    except ValueError:
        pass
    raise ConsentError(f"{name}: not a date (YYYY-MM-DD)", key="date_bad", field=name)


def chosen_mailbox(form: ReleaseForm) -> int | None:
    text = form.mailbox.strip()
    return int(text) if text.isascii() and text.isdigit() and len(text) < 16 else None


@dataclass
class CheckForm:
    """The dry run's fields as typed."""

    case: str = ""
    category: str = ""
    recipient: str = ""
    on: str = ""

    @classmethod
    def read(cls, form: FormData) -> CheckForm:
        return cls(case=text_of(form, "case"), category=text_of(form, "category"),
                   recipient=text_of(form, "recipient"), on=text_of(form, "on"))

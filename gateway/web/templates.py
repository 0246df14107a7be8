"""The Jinja environment of a web app: templates from a package, autoescaped, never cached as
bytecode on disk (the package directory may be read-only, and a cache is one more thing an
attacker could swap)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.templating import Jinja2Templates

# Times are stored in UTC and shown as the office's clock shows them.
OFFICE_TIME = ZoneInfo("Europe/Berlin")


def office_time(moment: datetime) -> datetime:
    """``moment`` on the office's clock (a naive one is taken as UTC, as the database
    gives them on SQLite without the column type's help)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo("UTC"))
    return moment.astimezone(OFFICE_TIME)


def package_templates(package: str, folder: str = "templates") -> Jinja2Templates:
    env = Environment(
        loader=PackageLoader(package, folder),
        # Every template is HTML; .txt ones (mail bodies) too would be escaped, on purpose.
        autoescape=select_autoescape(default=True, default_for_string=True),
        bytecode_cache=None,
        # A missing variable is a bug to see, not an empty string on a page.
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["office_time"] = office_time
    return Jinja2Templates(env=env)


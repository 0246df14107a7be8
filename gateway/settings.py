"""The one typed settings object.

Read from a TOML file plus ``XGATE_*`` environment overrides (nested keys joined by ``__``,
e.g. ``XGATE_DATABASE__URL``). It is built once by the edge that starts (CLI command, test)
and passed in explicitly; nothing reads configuration from a global.
"""

from __future__ import annotations

import os
import re
import tomllib
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.errors import GatewayError


class ConfigError(GatewayError):
    """Configuration is missing or invalid; the message names the key and what is expected."""


class _Section(BaseModel):
    # Unknown keys are almost always typos; refusing them beats silently ignoring them.
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(_Section):
    url: str = "sqlite:///var/xgate.db"
    echo: bool = False


class StorageSettings(_Section):
    master_key_file: Path = Path("var/keys/master.key")


class TlsSettings(_Section):
    cert_file: Path = Path("var/tls/cert.pem")
    key_file: Path = Path("var/tls/key.pem")


class ListenerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(ge=0, le=65535)
    enabled: bool = True


class SmtpSettings(_Section):
    hostname: str = "xgate.localhost"
    inbound: ListenerSettings = ListenerSettings(port=2525)
    submission: ListenerSettings = ListenerSettings(port=2587)
    max_message_bytes: int = Field(default=52_428_800, gt=0)
    max_recipients: int = Field(default=100, gt=0)
    # RFC 5322: 998 characters + CRLF; aiosmtpd adds one for the transparency dot.
    max_line_bytes: int = Field(default=1001, ge=80)
    max_header_bytes: int = Field(default=65_536, gt=0)
    max_connections: int = Field(default=100, gt=0)
    timeout_seconds: float = Field(default=300, gt=0)


class TlsPolicy(StrEnum):
    NONE = "none"
    OPPORTUNISTIC = "opportunistic"
    VERIFY = "required-with-verification"


class RelayRoute(_Section):
    """Where mail for a destination domain goes next. ``*`` matches every domain."""

    domain: str
    host: str
    port: int = Field(default=25, ge=1, le=65535)
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    ca_file: Path | None = None
    # Mail for these domains is for the office itself: recipients need no local mailbox.
    internal: bool = False

    @field_validator("domain")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()


class DeliverySettings(_Section):
    routes: list[RelayRoute] = []
    max_lifetime_seconds: int = Field(default=5 * 24 * 3600, gt=0)
    retry_base_seconds: float = Field(default=60, gt=0)
    retry_max_seconds: float = Field(default=3600, gt=0)
    connect_timeout_seconds: float = Field(default=30, gt=0)
    # The address bounces (DSNs) and notices are sent from.
    postmaster: str = "postmaster@xgate.localhost"


class WorkerSettings(_Section):
    # Worker processes that "xgate serve" starts. Processes, not threads, carry the load:
    # a thread holding the database's write lock must not wait for the GIL behind another.
    processes: int = Field(default=2, ge=1, le=64)
    # Worker threads in each worker process ("xgate serve worker").
    count: int = Field(default=1, ge=1, le=64)
    # Whoever stores runnable mail wakes the workers (gateway.queue.wake: PostgreSQL NOTIFY,
    # on SQLite a socket under data_dir); then the poll is only the fallback for a lost
    # wake-up. Off: the workers find new mail by polling alone.
    wake: bool = True
    poll_interval_seconds: float = Field(default=0.5, gt=0)
    # A message claimed by a worker that died is taken over once this much time has passed.
    lease_seconds: float = Field(default=120, gt=0)


class OutboundPolicy(StrEnum):
    """What a partner demands of mail the office sends it."""

    REQUIRE_SMIME = "require-smime"
    REQUIRE_OPENPGP = "require-openpgp"
    # S/MIME or OpenPGP, whichever usable key exists (S/MIME first).
    EITHER = "either"
    # Only for partners explicitly marked as receiving nothing sensitive.
    PLAINTEXT = "plaintext"
    # S/MIME, else OpenPGP, else the citizen portal's pickup (a notice without content and
    # a code on a second channel), else hold: for citizens, who mostly have no key.
    EITHER_OR_PORTAL = "either-or-portal"


class CryptoSettings(_Section):
    # PEM bundle of the CA certificates that S/MIME signatures must chain to.
    trust_anchors_file: Path | None = None
    # CRLs (PEM or DER) checked during chain validation; a listed serial is revoked.
    crl_files: list[Path] = []
    # Policy for external recipients whose domain or address no partner record names.
    # "either" fails closed: without a key the message is held, never sent in plaintext.
    unknown_partner_outbound: OutboundPolicy = OutboundPolicy.EITHER
    # Harvest certificates from validly signed inbound mail as *pending* keys.
    harvest_certificates: bool = True
    # Mail whose signature is present but fails is quarantined; from a partner set to "warn"
    # it is delivered with this prefix on the subject and a text part at the top saying why.
    invalid_signature_subject_prefix: str = Field(default="[Signatur ungültig]",
                                                  min_length=1, max_length=100)
    # Warn this many days before a partner's or our own key expires.
    expiry_warning_days: int = Field(default=30, ge=1)
    # "sequoia" decrypts in process (pysequoia); "gnupg" starts one gpg process per call.
    openpgp_backend: Literal["sequoia", "gnupg"] = "sequoia"
    # GnuPG home owned by the gateway (keyring management, and the "gnupg" backend).
    gnupg_home: Path = Path("var/gnupg")
    # Web Key Directory lookups of partners' OpenPGP keys.
    wkd_enabled: bool = True
    wkd_timeout_seconds: float = Field(default=10, gt=0)
    # CA bundle for WKD's HTTPS; empty means the system's CAs.
    wkd_ca_file: Path | None = None
    # Host to "address:port" overrides for WKD (split-horizon DNS, and the test set-up).
    wkd_resolve: dict[str, str] = {}


class ScanningSettings(_Section):
    # Scanning is never skipped: with it unreachable, mail waits (fail closed).
    # An external clamd by unix socket or TCP (the socket wins if both are set); with
    # neither, "xgate serve" runs its own.
    clamd_socket: Path | None = None
    clamd_host: str | None = None
    clamd_port: int = Field(default=3310, ge=1, le=65535)
    # Longer than clamd_max_scan_time_seconds, so clamd's own limit answers first (the
    # message is then unscannable) instead of our timeout (the message would wait forever).
    timeout_seconds: float = Field(default=150, gt=0)
    max_concurrent_scans: int = Field(default=4, ge=1, le=64)
    # A message on which clamd crashed or hung (it took the content, then gave no verdict)
    # this many times is quarantined as unscannable, with a notice, instead of waiting until
    # its lifetime ends. clamd unreachable for everyone (refused, no socket) does not count.
    unscannable_after_failures: int = Field(default=5, ge=1)
    # Log an error and raise xgate_scanner_failing once clamd has failed this long.
    alert_after_seconds: float = Field(default=300, gt=0)
    # The managed clamd: its socket (under data_dir), where signatures come from, its limits.
    managed_socket: Path = Path("clamd/clamd.sock")
    # clamd writes every scanned stream, and what it unpacks, to its TemporaryDirectory:
    # it must be memory (a tmpfs), or plaintext would touch the disk. Unset: a directory of
    # its own under /dev/shm. The managed clamd refuses to start on anything but a tmpfs.
    managed_temporary_dir: Path | None = None
    signature_dirs: list[Path] = [Path("/var/lib/clamav")]
    # Used (loudly) when signature_dirs hold no database, as on offline machines.
    test_signatures_dir: Path | None = None
    clamd_max_scan_size_mb: int = Field(default=400, ge=1)
    clamd_max_file_size_mb: int = Field(default=100, ge=1)
    clamd_max_recursion: int = Field(default=16, ge=1)
    clamd_max_scan_time_seconds: int = Field(default=120, ge=1)
    # The gateway's own limits, checked before ClamAV (which answers OK for what it cannot
    # open): over any of them a message is UNSCANNABLE and quarantined.
    max_uncompressed_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    max_compression_ratio: int = Field(default=100, ge=1)
    max_archive_members: int = Field(default=1000, ge=1)
    max_archive_depth: int = Field(default=5, ge=1)
    max_mime_parts: int = Field(default=500, ge=1)
    max_mime_depth: int = Field(default=20, ge=1)
    # Attachment types quarantined whatever ClamAV says, recognised by content.
    blocked_types: list[Literal["executable", "script", "office-macro"]] = [
        "executable", "script", "office-macro"]

    @model_validator(mode="after")
    def _timeout_after_scan_time(self) -> ScanningSettings:
        if self.timeout_seconds <= self.clamd_max_scan_time_seconds:
            raise ValueError(
                f"timeout_seconds ({self.timeout_seconds:g}) must be longer than "
                f"clamd_max_scan_time_seconds ({self.clamd_max_scan_time_seconds})")
        return self


# The consent gate's defaults. The categories are the terms on the office's release forms.
DEFAULT_CONSENT_CATEGORIES = ["Hilfeplan", "psychologisches Gutachten", "ärztlicher Bericht",
                              "Schulbericht", "Familiengerichtsentscheidung", "Stellungnahme",
                              "Sonstiges"]
DEFAULT_CATEGORY_ALIASES = {"Gutachten": "psychologisches Gutachten",
                            "Arztbericht": "ärztlicher Bericht",
                            "FamG": "Familiengerichtsentscheidung"}
DEFAULT_LEGAL_BASES = ["§ 8a SGB VIII", "§ 4 KKG", "§ 50 SGB VIII"]
# A German case reference (Aktenzeichen) such as 51.2-1234/2026 or 51-12/26: an office
# number with optional sub-numbers, a dash, a running number, a slash and the year. The
# look-arounds keep it from matching inside a longer number; the look-behind comes after
# the first digit because a pattern that starts with a character class is searched several
# times faster (the consent stage reads every outbound message's text with it).
DEFAULT_CASE_REFERENCE_PATTERN = (r"\d(?<![\w./-]\d)\d{0,3}(?:\.\d{1,4})*-\d{1,7}/"
                                  r"(?:\d{4}|\d{2})(?![\w/-])")


class ConsentSettings(_Section):
    # The catalogue of information categories a release can cover.
    categories: list[str] = DEFAULT_CONSENT_CATEGORIES
    # Short forms accepted in subject tags and headers, e.g. [Gutachten].
    category_aliases: dict[str, str] = DEFAULT_CATEGORY_ALIASES
    # Legal bases that allow a transfer without consent (with justification and approval).
    legal_bases: list[str] = DEFAULT_LEGAL_BASES
    # The zone in which "valid until" dates are read (the office's calendar day).
    timezone: str = "Europe/Berlin"
    # Told (by a notice with the reference) when a transfer on a legal basis awaits approval.
    approvers: list[str] = []
    # A report held for want of consent is returned to its sender after this many days.
    hold_expiry_days: int = Field(default=14, ge=1)
    # Largest signed release document (scan) accepted.
    max_document_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    # What the office's case references look like (a regular expression; a group named
    # "case", if there is one, is the reference). Outbound mail without a tag that names a
    # reference the consent register knows, in its subject or text, is a report of it.
    case_reference_pattern: str = DEFAULT_CASE_REFERENCE_PATTERN
    # How much of a message's text parts is searched for case references, in bytes. The
    # reference of a letter stands at its head; the search costs about 15 ms per MB.
    case_reference_scan_bytes: int = Field(default=16 * 1024, ge=1024, le=16 * 1024 * 1024)

    @field_validator("case_reference_pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        if compiled.fullmatch(""):
            raise ValueError("the pattern matches empty text")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _aliases_name_categories(self) -> ConsentSettings:
        if not self.categories or any(not c.strip() for c in self.categories):
            raise ValueError("categories must be a non-empty list of names")
        unknown = sorted(set(self.category_aliases.values()) - set(self.categories))
        if unknown:
            raise ValueError(f"category_aliases point at unknown categories: {unknown}")
        return self


class DemoSettings(_Section):
    # Only for trying the gateway out: a local SMTP server that keeps what the gateway relays
    # to it (sealed with the master key) instead of delivering it. "xgate init --demo" turns
    # it on and routes the office's own domain and every other domain to it.
    catcher: ListenerSettings = ListenerSettings(port=2526, enabled=False)


class WebSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8025, ge=0, le=65535)
    # Serve HTTPS with [tls]'s certificate; needed when browsers reach it by a name other than
    # loopback (session cookies are always Secure).
    tls: bool = False
    # Every staff user must set up a second factor (TOTP) before they reach anything else.
    require_2fa: bool = True
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    session_absolute_hours: int = Field(default=10, ge=1, le=7 * 24)
    # Addresses of reverse proxies whose X-Forwarded-For/-Proto are believed (uvicorn's
    # forwarded_allow_ips); the login throttle counts the client address they name.
    trusted_proxies: list[str] = ["127.0.0.1"]


class PortalTopic(_Section):
    # What the citizen picks on the upload page, and the shared mailbox it is filed to.
    name: str = Field(min_length=1)
    mailbox: str = Field(min_length=3)


class PortalSettings(_Section):
    # The citizen portal: internet-facing, its own app and listener (not the staff app's).
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=8026, ge=0, le=65535)
    # Serve HTTPS with [tls]'s certificate (and send HSTS); or put a TLS proxy in front.
    tls: bool = False
    # Addresses of reverse proxies whose X-Forwarded-For/-Proto are believed (uvicorn's
    # forwarded_allow_ips): the rate limits count the citizen's address the proxy names. Any
    # other peer's X-Forwarded-For is ignored, so a citizen cannot pick their own address.
    trusted_proxies: list[str] = ["127.0.0.1"]
    max_upload_bytes: int = Field(default=25 * 1024 * 1024, ge=1)
    max_files: int = Field(default=10, ge=1, le=100)
    # Submissions per client address and in all per hour; more get a "try later" page.
    submissions_per_ip_per_hour: int = Field(default=10, ge=1)
    submissions_per_hour: int = Field(default=500, ge=1)
    # Client addresses are kept hashed for the rate limits and forgotten after this long.
    ip_retention_hours: int = Field(default=24, ge=1, le=24 * 30)
    # A form sent back faster than this after it was shown is taken for a robot.
    min_fill_seconds: int = Field(default=3, ge=0, le=600)
    # An upload whose body stops arriving for this long is answered 408 and dropped.
    body_timeout_seconds: float = Field(default=30, gt=0, le=600)
    # Uploads read at once (each may hold up to max_upload_bytes in memory); more get 503.
    max_concurrent_uploads: int = Field(default=4, ge=1, le=256)
    # Sender of a submission when the citizen gives no e-mail address.
    noreply_address: str = "portal-noreply@jugendamt.example"
    topics: list[PortalTopic] = []
    # Pickup (gateway.portal.pickup): the portal's address as citizens reach it (for the link
    # in the notice mail), wrong codes before an item locks, days an unread item waits.
    public_url: str = "https://portal.jugendamt.example"
    pickup_max_tries: int = Field(default=5, ge=1, le=20)
    pickup_valid_days: int = Field(default=14, ge=1, le=365)
    # Self-service: a citizen who lost her code may ask for a new one on the code page; it goes
    # by SMS to the number on the ticket (needs an SMS sender), at most one per interval.
    self_service_codes: bool = False
    self_service_interval_minutes: int = Field(default=60, ge=5, le=24 * 60)


class LoginSettings(_Section):
    # Failed logins (web, API, SMTP AUTH) before a user name or a client address is locked.
    free_failures_per_user: int = Field(default=5, ge=1)
    free_failures_per_address: int = Field(default=20, ge=1)
    # The first lockout; each further failure doubles it up to the maximum.
    lockout_seconds: int = Field(default=30, ge=1)
    max_lockout_seconds: int = Field(default=3600, ge=1)


class LoggingSettings(_Section):
    level: str = "INFO"
    json_format: bool = Field(default=True, alias="json")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class GatewaySettings(_Section):
    # Domains this gateway receives mail for on the inbound listener.
    local_domains: list[str] = ["jugendamt.example"]

    @field_validator("local_domains")
    @classmethod
    def _lower_domains(cls, value: list[str]) -> list[str]:
        return [d.strip().lower() for d in value]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="XGATE_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Path("var")
    gateway: GatewaySettings = GatewaySettings()
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    tls: TlsSettings = TlsSettings()
    smtp: SmtpSettings = SmtpSettings()
    delivery: DeliverySettings = DeliverySettings()
    workers: WorkerSettings = WorkerSettings()
    crypto: CryptoSettings = CryptoSettings()
    scanning: ScanningSettings = ScanningSettings()
    consent: ConsentSettings = ConsentSettings()
    demo: DemoSettings = DemoSettings()
    web: WebSettings = WebSettings()
    portal: PortalSettings = PortalSettings()
    login: LoginSettings = LoginSettings()
    logging: LoggingSettings = LoggingSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file, which is passed as init arguments.
        return env_settings, init_settings

    def resolve(self, path: Path) -> Path:
        """Relative paths in the configuration are relative to the configuration's base dir."""
        return path if path.is_absolute() else (self._base_dir / path)

    _base_dir: Path = Path(".")


def load_settings(path: Path | None, **overrides: Any) -> Settings:
    """Read ``path`` (TOML), apply environment overrides, validate.

    Raises ConfigError with one line per problem, each naming the key.
    """
    data: dict[str, Any] = {}
    base = Path.cwd()
    if path is not None:
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(f"configuration file not found: {path}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        base = path.resolve().parent
    data.update(overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, path)) from None
    settings._base_dir = base
    return settings


def env_name(loc: tuple[int | str, ...]) -> str:
    """The environment variable that sets the key at ``loc`` (XGATE_SMTP__MAX_RECIPIENTS)."""
    return "XGATE_" + "__".join(str(part).upper() for part in loc)


def format_validation_error(exc: ValidationError, path: Path | None) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(top level)"
        # Name where the bad value came from: the environment wins over the file.
        variable = env_name(err["loc"])
        if err["loc"] and variable in os.environ:
            where = f"environment {variable}: "
        else:
            where = f"{path}: " if path else ""
        problem = err["msg"]
        if err["type"] == "extra_forbidden":
            problem = "unknown key"
        elif err["type"] == "missing":
            problem = "required key is missing"
        got = err.get("input")
        shown = "" if err["type"] in ("missing", "extra_forbidden") else f" (got {got!r})"
        lines.append(f"{where}invalid configuration: {key}: {problem}{shown}")
    return "\n".join(lines)

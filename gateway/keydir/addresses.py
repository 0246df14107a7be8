"""Address and pattern syntax shared by partners, partner keys and own keys."""

from __future__ import annotations

from gateway.keydir.errors import KeyDirError


def normalise(text: str) -> str:
    # Local parts are case-sensitive by the RFC, but no partner relies on that; matching
    # case-insensitively is what every mail client does in practice.
    return text.strip().lower()


def _valid_domain(domain: str) -> bool:
    labels = domain.split(".")
    return (len(labels) >= 2 and all(labels) and len(domain) <= 253
            and not any(ch.isspace() or ch in "@<>,;\"" for ch in domain))


def check_address(text: str) -> str:
    """One e-mail address, lower-cased; KeyDirError if it is not one."""
    address = normalise(text)
    local, at, domain = address.rpartition("@")
    if not local or not at or not _valid_domain(domain) or any(
            ch.isspace() or ch in "<>,;@" for ch in local) or len(address) > 320:
        raise KeyDirError(f"not a valid e-mail address: {text!r}", "bad-address", text=text)
    return address


def check_pattern(text: str) -> str:
    """A partner pattern: a whole domain or one address, lower-cased."""
    pattern = normalise(text)
    if "@" in pattern:
        return check_address(pattern)
    if not _valid_domain(pattern):
        raise KeyDirError(f"not a valid domain or e-mail address: {text!r}", "bad-pattern",
                          text=text)
    return pattern


def check_own_address(text: str) -> str:
    """An address our own key belongs to, or "@domain" for an office-wide key."""
    value = normalise(text)
    if value.startswith("@"):
        if not _valid_domain(value[1:]):
            raise KeyDirError(f"not a valid domain: {text!r} (expected @domain)",
                              "bad-own-domain", text=text)
        return value
    return check_address(value)


def domain_of(address: str) -> str:
    return normalise(address).rpartition("@")[2]

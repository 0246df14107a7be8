"""Who a message is from, for policy and for matching a signer to the sender."""

from __future__ import annotations

from email.utils import getaddresses

from gateway.pipeline.context import MessageContext


def sender_address(ctx: MessageContext) -> str:
    """The From header's single address, lower-cased; the envelope sender otherwise.

    A signature vouches for the author the recipient sees, which is the From header, so
    that is what a signer must match. With no usable From (none, several, garbled) the
    envelope sender stands in; an empty result matches no key and no partner.
    """
    headers = ctx.headers()
    # The From fields as they stand (raw_items parses nothing).
    raw = tuple(value for name, value in headers.raw_items() if name.lower() == "from")
    cached = ctx.sender_cache
    # Several stages ask (decrypt, verify, scan, inbound policy), each on another parse of
    # the header block, and parsing an address field is the dearest header read there is:
    # parsed again only when the From fields themselves changed (decryption can bring a
    # protected From up from inside). policy.default's parse stays: it decodes RFC 2047
    # display names before the address is picked out.
    if cached is not None and cached[0] == raw:
        return cached[1]
    values = headers.get_all("From") or []
    addresses = [addr for _, addr in getaddresses([str(v) for v in values]) if addr]
    found = addresses[0].lower() if len(addresses) == 1 and "@" in addresses[0] \
        else ctx.mail_from.lower()
    ctx.sender_cache = (raw, found)
    return found

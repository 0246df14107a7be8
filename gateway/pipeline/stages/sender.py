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
    values = ctx.headers().get_all("From") or []
    addresses = [addr for _, addr in getaddresses([str(v) for v in values]) if addr]
    if len(addresses) == 1 and "@" in addresses[0]:
        return addresses[0].lower()
    return ctx.mail_from.lower()

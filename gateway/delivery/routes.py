"""Where a recipient's copy goes: a shared mailbox of the gateway, or a relay next hop.

Plain values, resolved by ``gateway.delivery.routing``, planned for by the outbound policy and
carried on the pipeline's context; kept apart from all three so that none needs another.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.settings import RelayRoute


@dataclass(frozen=True)
class LocalRoute:
    mailbox_id: int
    mailbox_address: str


Route = LocalRoute | RelayRoute

"""Which areas of the admin console each role reaches (admin_ui.security.rights)."""

from __future__ import annotations

import pytest

from admin_ui.security.errors import Forbidden
from admin_ui.security.identity import Staff
from admin_ui.security.rights import ConsoleArea, check_area, console_areas
from gateway.staff.roles import GlobalRole as R

A = ConsoleArea


def user(*roles: R) -> Staff:
    return Staff(user_id=1, username="u", roles=frozenset(roles))


@pytest.mark.parametrize(("roles", "areas"), [
    ((), (A.CONSENT,)),
    ((R.AUDITOR,), (A.TRANSFERS, A.AUDIT)),
    ((R.DPO,), (A.TRANSFERS, A.AUDIT)),
    ((R.AUDITOR, R.DPO), (A.TRANSFERS, A.AUDIT)),
    ((R.ADMIN,), tuple(ConsoleArea)),
    ((R.ADMIN, R.DPO), tuple(ConsoleArea)),
])
def test_each_role_reaches_its_areas_only(roles: tuple[R, ...],
                                          areas: tuple[ConsoleArea, ...]) -> None:
    assert console_areas(user(*roles)) == areas
    for area in ConsoleArea:
        if area in areas:
            assert check_area(user(*roles), area) == user(*roles)
        else:
            with pytest.raises(Forbidden):
                check_area(user(*roles), area)

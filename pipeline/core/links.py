"""Where an analyst opens what an alert is about: the user's (or workload's) page in the
Microsoft Entra admin center, and the sign-in itself.

The admin center's deep links are the portal's own routes, not a documented API; they are
kept here, in one place, to follow Microsoft when a route moves. A single sign-in has no
admin-center route, so its link is the Microsoft Graph resource of that sign-in
(``GET /auditLogs/signIns/{id}``), which Graph Explorer opens with the reader's rights.
"""

from __future__ import annotations

from urllib.parse import quote

_ADMIN = "https://entra.microsoft.com/#view"
_USER = _ADMIN + "/Microsoft_AAD_UsersAndTenants/UserProfileMenuBlade/~/overview/userId/{}"
_WORKLOAD = _ADMIN + "/Microsoft_AAD_IAM/ManagedAppMenuBlade/~/Overview/objectId/{}"
_SIGNIN = "https://graph.microsoft.com/v1.0/auditLogs/signIns/{}"


def alert_links(subject_id: str, workload: bool, signin_id: str) -> dict[str, str]:
    """``user_page`` for the user or service principal (when its object id is known) and
    ``signin`` for the sign-in the alert describes."""
    links: dict[str, str] = {}
    if subject_id:
        links["user_page"] = (_WORKLOAD if workload else _USER).format(quote(subject_id, safe=""))
    if signin_id:
        links["signin"] = _SIGNIN.format(quote(signin_id, safe=""))
    return links

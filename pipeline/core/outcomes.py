"""What a sign-in's error code says happened, as the stateful rules count it.

One table, so brute force, password spray and MFA fatigue agree on what a failure is. The
codes are Entra ID's AADSTS numbers (documented in Microsoft's error-code reference).
"""

from __future__ import annotations

from enum import StrEnum

from pipeline.core.records import UNKNOWN_ERROR_CODE, SignIn


class Outcome(StrEnum):
    SUCCESS = "success"
    PRIMARY_FAILURE = "primary-failure"
    """The password (or first factor) was wrong, the account locked or disabled for it."""
    PASSWORD_PROVEN = "password-proven"
    """Blocked or interrupted after the password was accepted: the attacker knows it."""
    DISABLED = "disabled"
    """The account is disabled (50057): the password was right, or the probe only asks
    whether the account exists; ``disabled-account-attempts`` counts these per address."""
    INTERRUPT = "interrupt"
    """Part of a normal flow (keep me signed in, token renewal); not a failure."""
    MFA_DENIED = "mfa-denied"
    OTHER_FAILURE = "other-failure"


OUTCOME_BY_CODE: dict[int, Outcome] = {
    **dict.fromkeys(
        (50126, 50053, 50055, 50056, 50034, 50064, 80002, 80005, 50144), Outcome.PRIMARY_FAILURE
    ),
    **dict.fromkeys(
        (50074, 50076, 50072, 50079, 53000, 53001, 53003, 530002, 50158, 50097),
        Outcome.PASSWORD_PROVEN,
    ),
    **dict.fromkeys((50140, 50125, 70043, 70044), Outcome.INTERRUPT),
    50057: Outcome.DISABLED,
    500121: Outcome.MFA_DENIED,
}
"""Error code -> outcome class: 50126 invalid password, 50053 locked (smart lockout), 50055
expired password, 50056 no password stored, 50034 no such user, 50064 credential validation
failed, 80002/80005 on-premises pass-through validation failed, 50144 expired AD password;
50074/50076/50072/50079 MFA or MFA registration required, 53000-53003/530002 Conditional
Access blocked (device, platform, location, compliant device), 50158
external security challenge, 50097 device authentication required; 50057 disabled account;
50140 keep-me-signed-in
interrupt, 50125 password reset interrupt, 70043/70044 session expired by policy; 500121
strong authentication failed (MFA denied or not answered)."""


def outcome(signin: SignIn) -> Outcome:
    code = signin.error_code
    if code == 0:
        return Outcome.SUCCESS
    if any(step.result_detail.startswith("MFA denied") for step in signin.auth_steps):
        return Outcome.MFA_DENIED
    if code == UNKNOWN_ERROR_CODE:
        return Outcome.OTHER_FAILURE
    return OUTCOME_BY_CODE.get(code, Outcome.OTHER_FAILURE)

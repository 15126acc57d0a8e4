"""The normalized records every stage after the parser works on.

Rules, enrichment and sinks never see raw Entra JSON: the parser absorbs the
differences between categories, casings and export quirks once, here the shape is fixed.
Per-record types are ``NamedTuple``s: immutable, typed, and built in C. A frozen dataclass
costs a Python-level ``__setattr__`` per field, which at 31 fields was a quarter of the
parser's time per sign-in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal, NamedTuple


class Category(StrEnum):
    """Diagnostic-settings categories the pipeline understands."""

    SIGNIN = "SignInLogs"
    NON_INTERACTIVE = "NonInteractiveUserSignInLogs"
    SERVICE_PRINCIPAL = "ServicePrincipalSignInLogs"
    MANAGED_IDENTITY = "ManagedIdentitySignInLogs"
    MICROSOFT_SERVICE_PRINCIPAL = "MicrosoftServicePrincipalSignInLogs"
    ADFS = "ADFSSignInLogs"
    RISKY_USERS = "RiskyUsers"
    USER_RISK_EVENTS = "UserRiskEvents"


SIGNIN_CATEGORIES = frozenset(
    {
        Category.SIGNIN,
        Category.NON_INTERACTIVE,
        Category.SERVICE_PRINCIPAL,
        Category.MANAGED_IDENTITY,
        Category.MICROSOFT_SERVICE_PRINCIPAL,
        Category.ADFS,
    }
)
WORKLOAD_CATEGORIES = frozenset(
    {Category.SERVICE_PRINCIPAL, Category.MANAGED_IDENTITY, Category.MICROSOFT_SERVICE_PRINCIPAL}
)
RISK_CATEGORIES = frozenset({Category.RISKY_USERS, Category.USER_RISK_EVENTS})

UNKNOWN_ERROR_CODE = -1
"""Error code of a sign-in reporting failure without a number (``resultType: "Failure"``)."""


class Location(NamedTuple):
    country: str = ""
    state: str = ""
    city: str = ""
    lat: float | None = None
    lon: float | None = None


class Device(NamedTuple):
    id: str = ""
    os: str = ""
    browser: str = ""
    compliant: bool | None = None
    managed: bool | None = None
    trust_type: str = ""


class PolicyResult(NamedTuple):
    """One Conditional Access policy as applied to a sign-in."""

    id: str
    name: str
    result: str


class AuthStep(NamedTuple):
    """One step of ``authenticationDetails`` (password, MFA prompt, ...)."""

    method: str
    succeeded: bool | None
    result_detail: str
    requirement: str


class From(NamedTuple):
    """Where a sign-in field is read and how, declared on the field itself so that adding a
    field is one line: the parser reads every field that carries one (``pipeline.core.parse``).

    ``path`` is under ``properties`` (Graph objects have no envelope), dotted into nested
    objects. ``clean``: ``text`` keeps strings and writes numbers as text; ``lower`` also
    lower-cases (ids and levels, compared case-insensitively downstream); ``int`` takes an
    integer or a string of digits. Anything absent or of another type reads as empty (""
    or 0), never as a reject: exports omit what their schema version lacks.
    """

    path: str
    clean: Literal["text", "lower", "int"] = "text"


class Column(NamedTuple):
    """The Log Analytics (Sentinel) column a field's Graph property ``key`` is read from,
    declared where the column is not simply ``key`` in PascalCase (``AppId`` is ``appId``,
    ``IPAddress`` is not ``iPAddress``). ``key`` defaults to the field's ``From`` path.
    These declarations are the whole column table of ``pipeline.core.shapes.loganalytics``:
    a column declared here wins over one that only looks like the key.
    """

    name: str
    key: str = ""


class SignIn(NamedTuple):
    """One sign-in of any category, user or workload. Fields without ``From`` are read by
    code of their own in the parser (they need the envelope, the category or a shape).
    Fields read alike sit together: the parser fills each such run in one pass."""

    id: str
    time: Annotated[datetime, Column("TimeGenerated", "time")]
    """``createdDateTime``, else the envelope's ``time``: workload tables have only
    ``TimeGenerated``."""
    category: Category
    tenant_id: Annotated[str, Column("AADTenantId", "tenantId")]
    # Read as text.
    user_id: Annotated[str, From("userId")]
    upn: Annotated[str, From("userPrincipalName")]
    display_name: Annotated[str, From("userDisplayName")]
    """Else the envelope's ``identity``."""
    app_name: Annotated[str, From("appDisplayName")]
    resource_name: Annotated[str, From("resourceDisplayName")]
    client_app_used: Annotated[str, From("clientAppUsed")]
    user_agent: Annotated[str, From("userAgent")]
    ip: Annotated[str, From("ipAddress"), Column("IPAddress")]
    """Else the envelope's ``callerIpAddress``."""
    ca_status: Annotated[str, From("conditionalAccessStatus")]
    risk_state: Annotated[str, From("riskState")]
    risk_detail: Annotated[str, From("riskDetail")]
    auth_requirement: Annotated[str, From("authenticationRequirement")]
    sp_name: Annotated[str, From("servicePrincipalName")]
    correlation_id: Annotated[str, From("correlationId")]
    """Else the envelope's ``correlationId``."""
    auth_protocol: Annotated[str, From("authenticationProtocol")]
    """``deviceCode``, ``ropc``, ``oAuth2``, ``saml20``, ``wsFed``, ``none``..."""
    original_transfer_method: Annotated[str, From("originalTransferMethod")]
    """``deviceCodeFlow`` on a refresh of a token first obtained by device code."""
    incoming_token_type: Annotated[str, From("incomingTokenType")]
    session_id: Annotated[str, From("sessionId")]
    user_type: Annotated[str, From("userType")]
    """``member`` or ``guest``."""
    cross_tenant_access_type: Annotated[str, From("crossTenantAccessType")]
    sp_credential_key_id: Annotated[str, From("servicePrincipalCredentialKeyId")]
    # Read lower-cased.
    app_id: Annotated[str, From("appId", "lower")]
    resource_id: Annotated[str, From("resourceId", "lower"), Column("ResourceIdentity")]
    risk_during: Annotated[str, From("riskLevelDuringSignIn", "lower")]
    risk_aggregated: Annotated[str, From("riskLevelAggregated", "lower")]
    sp_id: Annotated[str, From("servicePrincipalId", "lower")]
    home_tenant_id: Annotated[str, From("homeTenantId", "lower")]
    resource_tenant_id: Annotated[str, From("resourceTenantId", "lower")]
    # Numbers and nested values.
    asn: Annotated[int, From("autonomousSystemNumber", "int")]
    """The source address's autonomous system; 0 when unknown."""
    additional_details: Annotated[str, From("status.additionalDetails")]
    token_session_status: Annotated[str, From("tokenProtectionStatusDetails.signInSessionStatus")]
    """Token protection: ``bound``, ``unbound`` or ``unknown``."""
    # Read by code of their own.
    location: Annotated[Location, Column("LocationDetails", "location")]
    device: Device
    error_code: int
    failure_reason: str
    ca_policies: Annotated[
        tuple[PolicyResult, ...],
        Column("ConditionalAccessPolicies", "appliedConditionalAccessPolicies"),
    ]
    """The Conditional Access policies that applied (enforced or report-only with an outcome);
    ``notApplied`` and ``notEnabled`` entries are dropped."""
    risk_event_types: Annotated[tuple[str, ...], Column("RiskEventTypes_V2", "riskEventTypes_v2")]
    interactive: bool
    auth_steps: tuple[AuthStep, ...]

    @property
    def succeeded(self) -> bool:
        return self.error_code == 0

    @property
    def is_workload(self) -> bool:
        """Service principals and managed identities sign in without a user."""
        return self.category in WORKLOAD_CATEGORIES

    @property
    def subject_id(self) -> str:
        """The identity whose history this sign-in belongs to (user or workload)."""
        return self.user_id or self.sp_id


class RiskEvent(NamedTuple):
    """An Identity Protection record: a user's risk state change or one risk detection.

    ``RiskyUsers`` rows report the user's current state; ``UserRiskEvents`` rows report one
    detection (``event_type``) that usually points at the sign-in it was raised on
    (``request_id`` equals that sign-in's id).
    """

    id: str
    time: datetime
    category: Category
    tenant_id: str
    user_id: str
    upn: str
    display_name: str
    level: str
    state: str
    detail: str
    event_type: str
    request_id: str
    correlation_id: str
    ip: str
    location: Location
    timing: str
    additional_info: tuple[tuple[str, str], ...]


Record = SignIn | RiskEvent


SEVERITIES = ("informational", "low", "medium", "high", "critical")
ALERT_SCHEMA_VERSION = "2"
"""The alert record's version: 2 added ``next_steps``, ``links`` and this field. Receivers
key parsers on it; a field added or changed in meaning raises it."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One incident, as it travels on the alerts topic and leaves ``scan``.

    ``id`` is deterministic (rule + the sign-in(s) it rests on), so a redelivered sign-in
    yields the same id and receivers dedup on it.
    """

    id: str
    rule: str
    severity: str
    time: str
    detected_at: str
    title: str
    summary: str
    tenant_id: str
    user: str
    user_id: str
    ip: str
    location: dict[str, object]
    client: dict[str, object]
    risk: dict[str, object]
    signin_ids: tuple[str, ...]
    mitre: tuple[str, ...]
    evidence: dict[str, object]
    next_steps: tuple[str, ...]
    """The rule's advice to the analyst: what to check, then what to do."""
    links: dict[str, str]
    """Entra admin center pages: ``user_page`` (the user or workload), ``signin_page``."""
    schema_version: str = ALERT_SCHEMA_VERSION

"""Graph API pages and bare objects (auditLogs/signIns v1.0 and beta, riskDetections,
riskyUsers), derived from the bundled sample: beta feeds every rule the diagnostic form
does; v1.0 lacks the fields some rules need, and the README's table says which."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest

from pipeline.core.parse import parse_file
from pipeline.core.policy import Policy
from pipeline.core.scan import scan

SAMPLE = Path(__file__).resolve().parents[1] / "pipeline" / "data" / "sample-signins.ndjson"
V1_SIGNIN = frozenset(
    {"id", "createdDateTime", "userDisplayName", "userPrincipalName", "userId", "appId"}
    | {"appDisplayName", "ipAddress", "clientAppUsed", "correlationId", "isInteractive"}
    | {"conditionalAccessStatus", "riskDetail", "riskLevelAggregated", "riskLevelDuringSignIn"}
    | {"riskState", "riskEventTypes", "riskEventTypes_v2", "resourceDisplayName", "resourceId"}
    | {"status", "deviceDetail", "location", "appliedConditionalAccessPolicies"}
)
"""The v1.0 signIn resource's properties (Microsoft Graph reference)."""
EVENT_TYPES = {
    "SignInLogs": "interactiveUser",
    "NonInteractiveUserSignInLogs": "nonInteractiveUser",
    "ServicePrincipalSignInLogs": "servicePrincipal",
    "ManagedIdentitySignInLogs": "managedIdentity",
}
V1_RULES = frozenset(
    {"risky-signin", "legacy-auth", "password-spray", "brute-force", "impossible-travel"}
    | {"risk-detection", "mfa-fatigue"}
)
"""Rules whose alerts v1.0 gives as the diagnostic form does (docs/inputs-outputs.md)."""


def _records() -> list[dict[str, Any]]:
    return [r for line in SAMPLE.read_bytes().splitlines() for r in orjson.loads(line)["records"]]


def graph_objects(version: str) -> list[dict[str, Any]]:
    """The sample's records as Graph returns them: sign-ins (beta with signInEventTypes;
    v1.0 interactive only, its properties only), risk detections and risky users."""
    out = []
    for record in _records():
        props = dict(record["properties"])
        category = record["category"]
        if category in EVENT_TYPES:
            if version == "v1.0":
                if category != "SignInLogs":
                    continue
                props = {k: v for k, v in props.items() if k in V1_SIGNIN}
            else:
                props["signInEventTypes"] = [EVENT_TYPES[category]]
        out.append(props)
    return out


def pages(objects: list[dict[str, Any]], size: int = 40) -> bytes:
    """JSON lines of Graph pages, each with the link to the next, as a paging export saves."""
    lines = []
    for start in range(0, len(objects), size):
        page: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/beta/$metadata#auditLogs/signIns",
            "value": objects[start : start + size],
        }
        if start + size < len(objects):
            page["@odata.nextLink"] = (
                f"https://graph.microsoft.com/beta/auditLogs/signIns?$skiptoken={start}"
            )
        lines.append(orjson.dumps(page))
    return b"\n".join(lines) + b"\n"


def _alerts(data: bytes) -> set[tuple[str, str, str, tuple[str, ...]]]:
    out = io.BytesIO()
    scan([("graph", data)], Policy(), out)
    return {
        (a["id"], a["rule"], a["severity"], tuple(a["signin_ids"]))
        for a in map(orjson.loads, out.getvalue().splitlines())
    }


DIAGNOSTIC = _alerts(SAMPLE.read_bytes())


@pytest.mark.parametrize("form", ["pages", "bare-lines", "array"])
def test_beta_gives_the_diagnostic_alerts(form: str) -> None:
    objects = graph_objects("beta")
    data = {
        "pages": pages(objects),
        "bare-lines": b"".join(orjson.dumps(o) + b"\n" for o in objects),
        "array": orjson.dumps(objects),
    }[form]
    parsed = parse_file(data)
    assert parsed.rejected == []
    assert len(parsed.records) == len(_records())
    assert _alerts(data) == DIAGNOSTIC


def test_a_page_with_only_a_next_link_is_a_page() -> None:
    objects = graph_objects("beta")[:3]
    data = orjson.dumps({"value": objects, "@odata.nextLink": "https://graph/next"})
    assert len(parse_file(data).records) == 3


def test_v1_feeds_the_rules_the_readme_lists() -> None:
    got = _alerts(pages(graph_objects("v1.0")))
    assert {a for a in DIAGNOSTIC if a[1] in V1_RULES} == {a for a in got if a[1] in V1_RULES}
    assert {a[1] for a in got} <= {a[1] for a in DIAGNOSTIC}

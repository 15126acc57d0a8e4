"""attack-tool: a sign-in whose user agent names an offensive tool.

Tools written for red teams against Entra ID and Microsoft 365 send a user agent of their
own unless the operator changes it; many operators do not. The table below is the one
place the tokens live: each is matched case-insensitively anywhere in the user agent. A
tool that imitates a browser by default (GraphRunner's and TokenTactics' forged agents,
MFASweep's per-client agents) is matched by its name only, which catches builds that keep
it and wrappers that announce it; its other traces are for the stateful rules (spray,
brute force, token replay).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.rules.base import Case, Finding, IncidentSettings, Rule

if TYPE_CHECKING:
    from pipeline.core.enrich import Enriched
    from pipeline.core.policy import Policy

TOOLS: tuple[tuple[str, str], ...] = (
    # AzureHound sends "azurehound/v<version>" (github.com/BloodHoundAD/AzureHound, its
    # constants package; Sigma "Discovery Using AzureHound", 35b781cc).
    ("azurehound", "AzureHound"),
    # ROADtools: roadrecon gathers the directory, roadtx requests and replays tokens
    # (github.com/dirkjanm/ROADtools); builds and wrappers that name themselves.
    ("roadrecon", "ROADtools"),
    ("roadtx", "ROADtools"),
    ("roadtools", "ROADtools"),
    # TeamFiltration presents the 2019 Teams desktop client, build 1.3.00.24755 on Electron
    # 4.2.12 (Proofpoint on the UNK_SneakyStrike campaign, June 2025); real clients of that
    # build have been out of support since classic Teams retired.
    ("teams/1.3.00.24755", "TeamFiltration"),
    ("teamfiltration", "TeamFiltration"),
    # MFASweep tries one client after another (github.com/dafthack/MFASweep).
    ("mfasweep", "MFASweep"),
    # Sprayers: o365spray (github.com/0xZDH/o365spray), Spray365 (github.com/MarkoH17/Spray365),
    # MSOLSpray (github.com/dafthack/MSOLSpray), and Go's fasthttp client, whose default agent
    # "fasthttp" carried the 2024-25 spray waves against Entra (Elastic's hunting query
    # "Unusual Failed Authentication Attempts Behind Rare User Agents").
    ("o365spray", "o365spray"),
    ("spray365", "Spray365"),
    ("msolspray", "MSOLSpray"),
    ("fasthttp", "fasthttp sprayer"),
    # Token tooling: TokenTactics / TokenTacticsV2 (github.com/rvrsh3ll/TokenTactics,
    # github.com/f-bader/TokenTacticsV2), GraphRunner (github.com/dafthack/GraphRunner),
    # AADInternals (github.com/Gerenios/AADInternals).
    ("tokentactics", "TokenTactics"),
    ("graphrunner", "GraphRunner"),
    ("aadinternals", "AADInternals"),
)
"""(lower-case token, tool): a token anywhere in the user agent names the tool."""


def tool_in(user_agent: str) -> str | None:
    """The tool a user agent names. Substring tests on the lower-cased agent: a
    case-insensitive regex alternation of the tokens cost 23 us a sign-in, this under 1 us."""
    agent = user_agent.lower()
    for token, tool in TOOLS:
        if token in agent:
            return tool
    return None


def check(e: Enriched, policy: Policy, settings: IncidentSettings) -> Finding | None:
    s = e.signin
    tool = tool_in(s.user_agent) if s.user_agent else None
    if tool is None:
        return None
    outcome = "signed in" if s.succeeded else f"tried to sign in (error {s.error_code})"
    return Finding(
        severity="high" if s.succeeded else "medium",
        summary=f"{tool} {outcome} to {s.resource_name or s.app_name or 'a resource'}",
        evidence={
            "tool": tool,
            "user_agent": s.user_agent,
            "app_name": s.app_name,
            "app_id": s.app_id,
            "resource": s.resource_name or s.resource_id,
            "error_code": s.error_code,
        },
    )


RULE = Rule(
    id="attack-tool",
    title="Offensive tool signing in",
    severity="high",
    mitre=("T1087.004", "T1110"),
    description=(
        "A sign-in whose user agent names an offensive tool (AzureHound, ROADtools, "
        "TeamFiltration, MFASweep, o365spray, Spray365, MSOLSpray, fasthttp sprayers, "
        "TokenTactics, GraphRunner, AADInternals). High when it succeeded, medium when it "
        "failed. One incident per user while it continues."
    ),
    next_steps=(
        "Ask whether a penetration test or red-team exercise is running; if so, add its "
        "addresses or accounts to this rule's exceptions.",
        "On a success: revoke the user's sessions and reset the password, then review what "
        "the account read (directory, mail) since the sign-in.",
        "On failures: block the source address with a Conditional Access named location and "
        "check the other accounts it tried (password-spray, brute-force alerts).",
    ),
    check=check,
    settings=IncidentSettings,
    cases=(
        Case("AzureHound collecting", True, {"userAgent": "azurehound/v2.4.1"}),
        Case(
            "TeamFiltration's Teams client, failed",
            True,
            {
                "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                "(KHTML, like Gecko) Teams/1.3.00.24755 Chrome/69.0.3497.128 Electron/4.2.12 "
                "Safari/537.36",
                "status": {"errorCode": 50126},
            },
        ),
        Case("roadtx in another casing", True, {"userAgent": "ROADtx/1.0"}),
        Case("fasthttp sprayer", True, {"userAgent": "fasthttp", "status": {"errorCode": 50126}}),
        Case("ordinary browser", False),
        Case(
            "current Teams client",
            False,
            {
                "userAgent": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
                "(KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 Edg/130.0.0.0 "
                "Teams/24295.605.3225.8804/49"
            },
        ),
        Case("no user agent", False, {"userAgent": ""}),
    ),
)

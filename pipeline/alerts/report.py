"""The backtest report: one self-contained HTML file of charts over what ``scan`` reads.

The records go through the same driver as ``scan`` (``pipeline.core.scan.detect``), so the
numbers are ``scan``'s. What is kept while they go through is bounded by what is counted,
not by the sign-ins: counters per hour, rule, severity, outcome, client family and Outlook
build line, the last version of each alert, the open incident per entity
(``pipeline.core.incidents``) and at most eight clients per user (``pipeline.core.inventory``).

Charts are Plotly figures; plotly.js is inlined once, so the file opens offline and fetches
nothing.
"""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import plotly.graph_objects as go
import plotly.io as pio
from plotly.offline import get_plotlyjs

from pipeline.core.clientapp import version_tuple
from pipeline.core.enrich import Enriched
from pipeline.core.incidents import Tracker
from pipeline.core.inventory import Inventory, build_line
from pipeline.core.outcomes import outcome
from pipeline.core.policy import Policy
from pipeline.core.records import SEVERITIES
from pipeline.core.scan import Input, ScanStats, detect
from pipeline.core.timeparse import parse_time

Mask = Callable[[dict[str, Any]], dict[str, Any]]
_COLORS = {
    "informational": "#8da0cb",
    "low": "#66c2a5",
    "medium": "#ffd92f",
    "high": "#fc8d62",
    "critical": "#d62728",
}
TOP = 15
"""Users and addresses shown in the top charts."""
LISTED = 200
"""Non-compliant clients listed in the report's table (the chart counts them all)."""


def _hour(timestamp: str) -> str:
    return parse_time(timestamp).strftime("%Y-%m-%d %H:00")


@dataclass
class Tally:
    """What the report draws, collected as the driver's results come."""

    policy: Policy
    mask: Mask
    stats: ScanStats = field(default_factory=ScanStats)
    signins: int = 0
    signins_by_hour: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    families: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(platform, family) -> sign-ins."""
    builds: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(platform, build line) -> Outlook Mobile sign-ins."""
    alerts: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Alert id -> (masked) last version."""
    incidents: Tracker = field(init=False)
    inventory: Inventory = field(init=False)

    def __post_init__(self) -> None:
        self.incidents = Tracker(self.policy.incidents)
        self.inventory = Inventory(self.policy)

    def signin(self, e: Enriched) -> None:
        s, c = e.signin, e.client
        self.signins += 1
        self.signins_by_hour[s.time.strftime("%Y-%m-%d %H:00")] += 1
        self.outcomes[outcome(s).value] += 1
        self.families[c.platform, c.family] += 1
        if c.family == "outlook-mobile":
            self.builds[c.platform, build_line(c.version)] += 1
        self.inventory.add(e)

    def alert(self, alert: dict[str, Any]) -> None:
        masked = self.mask(alert)
        self.alerts[masked["id"]] = masked
        masked["incident_id"] = self.incidents.add(masked)


def collect(
    inputs: Iterable[Input],
    policy: Policy,
    mask: Mask,
    max_bytes: int,
) -> Tally:
    tally = Tally(policy, mask)
    for result in detect(inputs, policy, tally.stats, None, max_bytes):
        for e in result.enriched:
            tally.signin(e)
        for _, alerts in result.alerts:
            for alert in alerts:
                tally.alert(orjson.loads(orjson.dumps(alert)))
    tally.stats.alerts.update(a["rule"] for a in tally.alerts.values())
    return tally


def _figure(title: str, traces: list[Any], **layout: Any) -> go.Figure:
    figure = go.Figure(traces)
    defaults = {
        "height": 380,
        "margin": {"l": 60, "r": 20, "t": 50, "b": 60},
        "legend": {"orientation": "h", "y": -0.2},
    }
    figure.update_layout(title=title, template="plotly_white", **(defaults | layout))
    return figure


def _stacked(
    title: str, counts: Counter[tuple[str, str]], order: list[str] | None = None
) -> go.Figure:
    """Bars of (x, series) counts, one colour per series."""
    xs = sorted({x for x, _ in counts})
    series = order or sorted({s for _, s in counts})
    traces = [
        go.Bar(
            name=s,
            x=xs,
            y=[counts.get((x, s), 0) for x in xs],
            marker_color=_COLORS.get(s),
        )
        for s in series
        if any(counts.get((x, s)) for x in xs)
    ]
    return _figure(title, traces, barmode="stack")


def _top(title: str, counts: dict[str, Counter[str]]) -> go.Figure:
    """Horizontal bars of the entities with the most severe incidents, by severity."""
    ranked = sorted(
        counts,
        key=lambda k: (*(-counts[k][s] for s in reversed(SEVERITIES)), k),
    )[:TOP]
    ranked.reverse()
    traces = [
        go.Bar(
            name=s,
            y=ranked,
            x=[counts[k][s] for k in ranked],
            orientation="h",
            marker_color=_COLORS[s],
        )
        for s in SEVERITIES
        if any(counts[k][s] for k in ranked)
    ]
    return _figure(title, traces, barmode="stack", height=120 + 24 * len(ranked))


def charts(tally: Tally) -> list[tuple[str, go.Figure]]:
    """(id, figure) of every chart that has something to show."""
    found: list[tuple[str, go.Figure]] = []
    alerts = list(tally.alerts.values())
    incidents = list(tally.incidents.incidents.values())
    if alerts:
        by_rule = Counter((_hour(a["time"]), a["rule"]) for a in alerts)
        by_severity = Counter((_hour(a["time"]), a["severity"]) for a in alerts)
        found.append(("alerts-by-rule", _stacked("Alerts per hour, by rule", by_rule)))
        found.append(
            (
                "alerts-by-severity",
                _stacked("Alerts per hour, by severity", by_severity, list(SEVERITIES)),
            )
        )
    if incidents:
        opened = Counter((_hour(i["first"]), i["severity"]) for i in incidents)
        found.append(
            (
                "incidents-by-severity",
                _stacked("Incidents opened per hour, by severity", opened, list(SEVERITIES)),
            )
        )
        users: dict[str, Counter[str]] = {}
        addresses: dict[str, Counter[str]] = {}
        for i in incidents:
            if i["kind"] == "user":
                users.setdefault(i["user"] or i["user_id"], Counter())[i["severity"]] += 1
            for ip in i["entities"]["ips"] or ([i["ip"]] if i["ip"] else []):
                addresses.setdefault(ip, Counter())[i["severity"]] += 1
        if users:
            found.append(("top-users", _top("Top users by incident severity", users)))
        if addresses:
            found.append(("top-ips", _top("Top source addresses by incident severity", addresses)))
    if tally.families:
        found.append(
            ("client-families", _stacked("Sign-ins per platform, by client family", tally.families))
        )
    if tally.builds:
        found.append(("outlook-builds", _builds(tally)))
    rows = tally.inventory.rows(non_compliant=True)
    if rows:
        why = Counter(r["issue"] for r in rows)
        users_by_issue = {k: len({r["user_id"] for r in rows if r["issue"] == k}) for k in why}
        found.append(
            (
                "non-compliant",
                _figure(
                    "Users with a non-compliant mail client, by reason",
                    [go.Bar(x=list(users_by_issue), y=list(users_by_issue.values()))],
                ),
            )
        )
    if tally.outcomes:
        found.append(
            (
                "outcomes",
                _figure(
                    "Sign-in outcomes",
                    [go.Pie(labels=list(tally.outcomes), values=list(tally.outcomes.values()))],
                ),
            )
        )
    if tally.stats.rejected:
        rejected = tally.stats.rejected
        found.append(
            (
                "rejected",
                _figure(
                    "Rejected input, by reason",
                    [go.Bar(x=list(rejected), y=list(rejected.values()), marker_color="#999")],
                ),
            )
        )
    return found


def _builds(tally: Tally) -> go.Figure:
    """Outlook Mobile sign-ins per build line and platform, with each platform's policy
    minimum drawn between the lines below and above it."""
    lines = sorted({b for _, b in tally.builds}, key=lambda b: (b == "unknown", version_tuple(b)))
    figure = _stacked("Outlook Mobile builds per platform", Counter())
    for platform in sorted({p for p, _ in tally.builds}):
        figure.add_trace(
            go.Bar(name=platform, x=lines, y=[tally.builds.get((platform, b), 0) for b in lines])
        )
    figure.update_layout(
        barmode="group",
        xaxis={"type": "category", "categoryorder": "array", "categoryarray": lines},
    )
    minimums: dict[str, list[str]] = {}
    for platform in ("ios", "android"):
        minimums.setdefault(getattr(tally.policy.outlook_minimum, platform), []).append(platform)
    for minimum, platforms in minimums.items():
        below = sum(
            1 for b in lines if b != "unknown" and version_tuple(b) < version_tuple(minimum)
        )
        figure.add_vline(
            x=below - 0.5,
            line_dash="dash",
            line_color="#d62728",
            annotation_text=f"policy minimum {minimum} ({', '.join(platforms)})",
        )
    return figure


def _numbers(tally: Tally) -> list[tuple[str, str, int]]:
    """(id, label, value) of the figures the report states, the ones ``scan`` reports."""
    stats = tally.stats
    numbers = [
        ("records", "records read", stats.records),
        ("signins", "sign-ins", tally.signins),
        ("alerts", "alerts", len(tally.alerts)),
        ("incidents", "incidents", len(tally.incidents.incidents)),
        ("rejected", "rejected records", sum(stats.rejected.values())),
        (
            "non-compliant-users",
            "users with a non-compliant mail client",
            len({r["user_id"] for r in tally.inventory.rows(non_compliant=True)}),
        ),
    ]
    numbers += [
        (f"alerts-{rule}", f"alerts: {rule}", n) for rule, n in sorted(stats.alerts.items())
    ]
    numbers += [
        (f"rejected-{reason}", f"rejected: {reason}", n)
        for reason, n in sorted(stats.rejected.items())
    ]
    return numbers


def render(tally: Tally, title: str = "signin-risk backtest") -> str:
    """The report as one HTML document."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}"
        ".grid{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:16px}"
        ".chart{border:1px solid #ddd;border-radius:6px;padding:4px}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;"
        "padding:3px 8px;text-align:left}td.n{text-align:right}</style>",
        f"<script>{get_plotlyjs()}</script>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.</p>",
        '<table id="numbers"><tbody>',
    ]
    parts += [
        f'<tr><th>{html.escape(label)}</th><td class="n" data-number="{html.escape(key)}">'
        f"{value}</td></tr>"
        for key, label, value in _numbers(tally)
    ]
    parts.append('</tbody></table><div class="grid">')
    for chart_id, figure in charts(tally):
        body = pio.to_html(
            figure,
            full_html=False,
            include_plotlyjs=False,
            div_id=chart_id,
            config={"displaylogo": False, "responsive": True},
        )
        parts.append(f'<div class="chart" data-chart="{chart_id}">{body}</div>')
    parts.append("</div>")
    parts += _non_compliant_table(tally)
    parts.append("</body></html>")
    return "\n".join(parts)


def _non_compliant_table(tally: Tally) -> list[str]:
    rows = tally.inventory.rows(non_compliant=True)
    if not rows:
        return []
    columns = ("user", "name", "platform", "version", "last_seen", "count", "issue")
    out = [
        f"<h2>Non-compliant mail clients ({len(rows)})</h2>",
        '<table id="non-compliant-clients"><thead><tr>',
        *(f"<th>{c}</th>" for c in columns),
        "</tr></thead><tbody>",
    ]
    for row in rows[:LISTED]:
        masked = tally.mask(row)
        cells = "".join(f"<td>{html.escape(str(masked[c]))}</td>" for c in columns)
        out.append(f"<tr>{cells}</tr>")
    out.append("</tbody></table>")
    if len(rows) > LISTED:
        out.append(f"<p>... and {len(rows) - LISTED} more (signin-risk inventory lists all).</p>")
    return out

"""Run the enabled rules over each record and turn findings and incidents into alerts.

Pure apart from the client-identity memo: the caller supplies the state (the user's risk,
the stateful rules' windows), so the offline ``scan`` (state in dicts) and the streaming
worker (state in tables) share it all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from pipeline.core import risk
from pipeline.core.clientapp import ClientClassifier
from pipeline.core.enrich import Enriched, Observation
from pipeline.core.ids import Incident, alert_id
from pipeline.core.policy import Policy
from pipeline.core.records import Alert, Record, RiskEvent, SignIn
from pipeline.core.rules import REGISTRY, AnyRule, Finding, Rule, RuleSettings, StatefulRule
from pipeline.core.rules.windows import Hit, StatefulSettings
from pipeline.core.state import KeyedState
from pipeline.core.stateful import RuleStates, run
from pipeline.core.timeparse import format_time


def alert_json(alert: Alert) -> bytes:
    return orjson.dumps(alert)


class Judged(NamedTuple):
    enriched: Enriched | None
    """None for a risk record."""
    alerts: list[Alert]
    by_ip: Observation | None
    """For the IP-keyed rules (``Engine.process_by_ip``), which need other state."""


class Engine:
    def __init__(self, policy: Policy, rules: Iterable[AnyRule] | None = None) -> None:
        self.policy = policy
        self.classifier = ClientClassifier(policy.approved_app_ids)
        chosen = list(REGISTRY.values() if rules is None else rules)
        enabled = [(r, policy.rule(r.id)) for r in chosen if policy.rule(r.id).enabled]
        self.rules: list[tuple[Rule, RuleSettings]] = [
            (r, s) for r, s in enabled if isinstance(r, Rule)
        ]
        stateful = [(r, s) for r, s in enabled if isinstance(r, StatefulRule)]
        self.user_rules: list[tuple[StatefulRule, StatefulSettings]] = [
            (r, s) for r, s in stateful if r.keyed_by == "user" and isinstance(s, StatefulSettings)
        ]
        self.ip_rules: list[tuple[StatefulRule, StatefulSettings]] = [
            (r, s) for r, s in stateful if r.keyed_by == "ip" and isinstance(s, StatefulSettings)
        ]
        self._risk_rules = [(r, s) for r, s in self.user_rules if r.on_risk is not None]
        self.retention_s = max(
            (
                (s.window_minutes + s.lateness_minutes + s.suppression_minutes) * 60
                for _, s in self.user_rules + self.ip_rules
            ),
            default=0.0,
        )
        """Event time after which a key's stateful state is of no use to any rule."""
        allow = policy.allowlist
        self._networks = allow.all_networks()
        self._users = allow.users
        self._countries = allow.countries

    def enrich(self, signin: SignIn, user_risk: risk.UserRisk | None) -> Enriched:
        return Enriched(signin, self.classifier.identify(signin), risk.effective(signin, user_risk))

    def allowlisted(self, signin: SignIn) -> bool:
        if self._users and (
            signin.upn.lower() in self._users or signin.subject_id.lower() in self._users
        ):
            return True
        if self._countries and signin.location.country in self._countries:
            return True
        if self._networks and signin.ip:
            try:
                address = ipaddress.ip_address(signin.ip)
            except ValueError:
                return False
            return any(address in network for network in self._networks)
        return False

    def process(
        self, record: Record, book: KeyedState[risk.UserRisk], states: KeyedState[RuleStates]
    ) -> Judged:
        """One record in delivery order: a risk record updates ``book``, a sign-in is judged;
        both feed the user-keyed stateful rules, whose state is in ``states``."""
        if isinstance(record, RiskEvent):
            risk.update(book, record)
            alerts: list[Alert] = []
            allowed = record.upn.lower() in self._users or record.user_id.lower() in self._users
            if record.user_id and not allowed:
                for rule, settings in self._risk_rules:
                    self._stateful(rule, settings, states, record.user_id, record, alerts)
            return Judged(None, alerts, None)
        enriched, alerts = self.evaluate(record, book.get(record.subject_id))
        if not (self.user_rules or self.ip_rules) or self.allowlisted(record):
            return Judged(enriched, alerts, None)
        obs = Observation.of(enriched)
        if obs.user_id:
            for rule, settings in self.user_rules:
                if rule.wants(obs):
                    self._stateful(rule, settings, states, obs.user_id, obs, alerts)
        by_ip = obs if obs.ip and any(rule.wants(obs) for rule, _ in self.ip_rules) else None
        return Judged(enriched, alerts, by_ip)

    def process_by_ip(self, obs: Observation, states: KeyedState[RuleStates]) -> list[Alert]:
        """The IP-keyed rules for an observation ``process`` handed out, in ``states`` keyed
        by address (the worker runs this after re-keying by IP)."""
        alerts: list[Alert] = []
        for rule, settings in self.ip_rules:
            if rule.wants(obs):
                self._stateful(rule, settings, states, obs.ip, obs, alerts)
        return alerts

    def _stateful(
        self,
        rule: StatefulRule,
        settings: StatefulSettings,
        states: KeyedState[RuleStates],
        key: str,
        item: Observation | RiskEvent,
        out: list[Alert],
    ) -> None:
        due = run(rule, settings, states, key, item)
        if due is not None:
            incident, hit = due
            out.append(
                incident_alert(rule, settings, incident, hit, format_time(datetime.now(UTC)))
            )

    def evaluate(
        self, signin: SignIn, user_risk: risk.UserRisk | None, now: datetime | None = None
    ) -> tuple[Enriched, list[Alert]]:
        enriched = self.enrich(signin, user_risk)
        if not self.rules or self.allowlisted(signin):
            return enriched, []
        alerts: list[Alert] = []
        detected_at = ""
        for rule, settings in self.rules:
            finding = rule.check(enriched, self.policy, settings)
            if finding is not None:
                detected_at = detected_at or format_time(now or datetime.now(UTC))
                alerts.append(make_alert(rule, settings, finding, enriched, detected_at))
        return enriched, alerts


def make_alert(
    rule: Rule, settings: RuleSettings, finding: Finding, enriched: Enriched, detected_at: str
) -> Alert:
    signin = enriched.signin
    return Alert(
        id=alert_id(rule.id, (signin.id,)),
        rule=rule.id,
        severity=settings.severity or finding.severity,
        time=format_time(signin.time),
        detected_at=detected_at,
        title=finding.title or rule.title,
        summary=finding.summary,
        tenant_id=signin.tenant_id,
        user=signin.upn or signin.sp_name,
        user_id=signin.subject_id,
        ip=signin.ip,
        location=signin.location._asdict(),
        client=enriched.client.as_dict(),
        risk=enriched.risk.as_dict(),
        signin_ids=(signin.id,),
        mitre=rule.mitre,
        evidence=dict(finding.evidence),
    )


def incident_alert(
    rule: StatefulRule, settings: StatefulSettings, incident: Incident, hit: Hit, detected_at: str
) -> Alert:
    """An alert version of an incident; for an IP-keyed incident the users are in evidence."""
    about = hit.about
    by_user = rule.keyed_by == "user"
    return Alert(
        id=incident.id,
        rule=rule.id,
        severity=settings.severity or incident.severity,
        time=about.when,
        detected_at=detected_at,
        title=rule.title,
        summary=hit.summary,
        tenant_id=about.tenant_id,
        user=about.user if by_user else "",
        user_id=about.user_id if by_user else "",
        ip=about.ip,
        location=about.location._asdict(),
        client=about.client_dict(),
        risk=about.risk_dict(),
        signin_ids=incident.signin_ids,
        mitre=rule.mitre,
        evidence=hit.evidence | {"signin_count": incident.total},
    )

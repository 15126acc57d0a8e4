"""Run the enabled rules over each record and turn findings and incidents into alerts.

Pure apart from the client-identity memo: the caller supplies the state (the user's risk,
the stateful rules' windows), so the offline ``scan`` (state in dicts) and the streaming
worker (state in tables) share it all.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from typing import NamedTuple

import orjson

from pipeline.core import risk
from pipeline.core.clientapp import ClientClassifier
from pipeline.core.codec import RULE_STATES
from pipeline.core.enrich import Enriched, Observation
from pipeline.core.ids import Incident, alert_id
from pipeline.core.links import alert_links
from pipeline.core.policy import Policy
from pipeline.core.records import Alert, Record, RiskEvent, SignIn
from pipeline.core.rules import REGISTRY, AnyRule, Finding, Rule, RuleSettings, StatefulRule
from pipeline.core.rules.base import Exceptions, IncidentSettings
from pipeline.core.rules.windows import Hit, Sighting, StatefulSettings
from pipeline.core.state import Keyed, KeyedState, RuleStates
from pipeline.core.stateful import file_hit, run
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
        self.rules: list[tuple[Rule, RuleSettings, Exceptions | None]] = [
            (r, s, s.exceptions or None) for r, s in enabled if isinstance(r, Rule)
        ]
        self._excepted = {r.id: s.exceptions for r, s in enabled if s.exceptions}
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
        self.retention_s = max(
            self.retention_s,
            *(
                s.suppression_minutes * 60
                for _, s, _ in self.rules
                if isinstance(s, IncidentSettings)
            ),
            0.0,
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
        self, record: Record, book: Keyed[risk.UserRisk], states: KeyedState[RuleStates]
    ) -> Judged:
        """One record in delivery order: a risk record updates ``book``, a sign-in is judged;
        both feed the user-keyed stateful rules, whose state is in ``states``."""
        if isinstance(record, RiskEvent):
            risk.update(book, record)
            alerts: list[Alert] = []
            allowed = record.upn.lower() in self._users or record.user_id.lower() in self._users
            if record.user_id and not allowed:
                for rule, settings in self._risk_rules:
                    if self._excepted.get(rule.id) and self._excepted[rule.id].covers(
                        (record.user_id, record.upn), "", record.ip
                    ):
                        continue
                    self._stateful(rule, settings, states, record.user_id, record, alerts)
            return Judged(None, alerts, None)
        enriched, alerts = self.evaluate(record, book.get(record.subject_id), states=states)
        if not (self.user_rules or self.ip_rules) or self.allowlisted(record):
            return Judged(enriched, alerts, None)
        obs = Observation.of(enriched)
        excepted = self._excepted_rules(record) if self._excepted else frozenset()
        if obs.user_id:
            for rule, settings in self.user_rules:
                if rule.wants(obs) and rule.id not in excepted:
                    item = Sighting(obs, record) if rule.sees_signin else obs
                    self._stateful(rule, settings, states, obs.user_id, item, alerts)
        return Judged(enriched, alerts, self._for_ip_rules(obs, excepted))

    def observe(self, record: Record, book: Keyed[risk.UserRisk]) -> Observation | None:
        """What ``process`` hands the IP-keyed rules for ``record``, without judging it
        again (the user-keyed state already holds it)."""
        if not isinstance(record, SignIn) or not self.ip_rules or self.allowlisted(record):
            return None
        obs = Observation.of(self.enrich(record, book.get(record.subject_id)))
        excepted = self._excepted_rules(record) if self._excepted else frozenset()
        return self._for_ip_rules(obs, excepted)

    def _for_ip_rules(self, obs: Observation, excepted: frozenset[str]) -> Observation | None:
        wanted = any(rule.wants(obs) and rule.id not in excepted for rule, _ in self.ip_rules)
        return obs if obs.ip and wanted else None

    def _excepted_rules(self, signin: SignIn) -> frozenset[str]:
        who = (signin.user_id, signin.upn, signin.sp_id)
        return frozenset(
            rule_id
            for rule_id, exceptions in self._excepted.items()
            if exceptions.covers(who, signin.app_id, signin.ip)
        )

    def process_by_ip(self, obs: Observation, states: KeyedState[RuleStates]) -> list[Alert]:
        """The IP-keyed rules for an observation ``process`` handed out, in ``states`` keyed
        by address (the worker runs this after re-keying by IP). Exceptions by user and
        address hold here; by app only in ``process``, which has the app id."""
        alerts: list[Alert] = []
        excepted = self._excepted
        for rule, settings in self.ip_rules:
            if rule.wants(obs) and not (
                rule.id in excepted
                and excepted[rule.id].covers((obs.user_id, obs.user), "", obs.ip)
            ):
                self._stateful(rule, settings, states, obs.ip, obs, alerts)
        return alerts

    def _stateful(
        self,
        rule: StatefulRule,
        settings: StatefulSettings,
        states: KeyedState[RuleStates],
        key: str,
        item: Observation | Sighting | RiskEvent,
        out: list[Alert],
    ) -> None:
        due = run(rule, settings, states, key, item)
        if due is not None:
            incident, hit = due
            out.append(
                incident_alert(rule, settings, incident, hit, format_time(datetime.now(UTC)))
            )

    def evaluate(
        self,
        signin: SignIn,
        user_risk: risk.UserRisk | None,
        now: datetime | None = None,
        states: KeyedState[RuleStates] | None = None,
    ) -> tuple[Enriched, list[Alert]]:
        """The single-sign-in rules. A rule with incident settings files its finding into
        the user's incident in ``states`` (a throwaway state when None), so its alert is
        the incident's and continuing findings update it."""
        enriched = self.enrich(signin, user_risk)
        if not self.rules or self.allowlisted(signin):
            return enriched, []
        alerts: list[Alert] = []
        detected_at = ""
        who = (signin.user_id, signin.upn, signin.sp_id)
        for rule, settings, exceptions in self.rules:
            if exceptions is not None and exceptions.covers(who, signin.app_id, signin.ip):
                continue
            finding = rule.check(enriched, self.policy, settings)
            if finding is None:
                continue
            detected_at = detected_at or format_time(now or datetime.now(UTC))
            if not isinstance(settings, IncidentSettings) or not signin.subject_id:
                alerts.append(make_alert(rule, settings, finding, enriched, detected_at))
                continue
            about = Observation.of(enriched)
            hit = Hit(
                finding.severity,
                finding.summary,
                dict(finding.evidence),
                (signin.id,),
                signin.id,
                about,
            )
            kept = states if states is not None else KeyedState(RULE_STATES)
            incident = file_hit(rule.id, settings, kept, signin.subject_id, hit)
            if incident is not None:
                alert = incident_alert(rule, settings, incident, hit, detected_at)
                alerts.append(replace(alert, title=finding.title or rule.title))
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
        next_steps=rule.next_steps,
        links=alert_links(signin.subject_id, signin.is_workload, signin.id),
    )


def incident_alert(
    rule: StatefulRule | Rule,
    settings: IncidentSettings,
    incident: Incident,
    hit: Hit,
    detected_at: str,
) -> Alert:
    """An alert version of an incident; for an IP-keyed incident the users are in evidence."""
    about = hit.about
    by_user = not isinstance(rule, StatefulRule) or rule.keyed_by == "user"
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
        next_steps=rule.next_steps,
        links=alert_links(
            about.user_id if by_user else "",
            isinstance(rule, StatefulRule) and rule.workloads,
            about.id,
        ),
    )

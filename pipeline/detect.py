"""Run the enabled rules over one sign-in and turn findings into alerts.

Pure apart from the client-identity memo: the caller supplies the user's risk state, so the
offline ``scan`` (state in a dict) and the streaming worker (state in a table) share it all.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime

import orjson

from pipeline import risk
from pipeline.clientapp import ClientClassifier
from pipeline.enrich import Enriched
from pipeline.policy import Policy
from pipeline.records import Alert, Record, RiskEvent, SignIn
from pipeline.rules import REGISTRY, Finding, Rule, RuleSettings
from pipeline.timeparse import format_time

_ALERT_NAMESPACE = uuid.UUID("6f1c1f9e-4d7b-4c55-9a0e-5f3b7f2d8a11")


def alert_id(rule_id: str, signin_ids: Iterable[str]) -> str:
    """Deterministic: the same rule over the same sign-ins always gives the same id."""
    return str(uuid.uuid5(_ALERT_NAMESPACE, rule_id + "|" + "|".join(signin_ids)))


def alert_json(alert: Alert) -> bytes:
    return orjson.dumps(alert)


class Engine:
    def __init__(self, policy: Policy, rules: Iterable[Rule] | None = None) -> None:
        self.policy = policy
        self.classifier = ClientClassifier(policy.approved_app_ids)
        chosen = REGISTRY.values() if rules is None else rules
        self.rules: list[tuple[Rule, RuleSettings]] = [
            (rule, policy.rule(rule.id)) for rule in chosen if policy.rule(rule.id).enabled
        ]
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

    def process(self, record: Record, book: risk.RiskBook) -> tuple[Enriched | None, list[Alert]]:
        """One record in delivery order: a risk record updates ``book``, a sign-in is judged."""
        if isinstance(record, RiskEvent):
            book.update(record)
            return None, []
        return self.evaluate(record, book.get(record.subject_id))

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

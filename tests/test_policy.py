"""The policy file: defaults, the shipped config, and one-line errors for every kind of mistake."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
import yaml

from pipeline.core.clientapp import (
    EXCHANGE_ONLINE_RESOURCE_ID,
    IOS_ACCOUNTS_APP_ID,
    OUTLOOK_MOBILE_APP_ID,
)
from pipeline.core.policy import Policy, PolicyError, load_policy, policy_from_data
from pipeline.core.rules import REGISTRY
from pipeline.core.rules.unapproved_mobile_client import UnapprovedMobileClientSettings

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str | bytes, name: str = "policy.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path | str) -> str:
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert "\n" not in message, "a policy error is one line"
    assert message.startswith(f"{path}: "), "a policy error starts with the file"
    return message


# Defaults and the shipped file


def test_defaults() -> None:
    policy = Policy()
    assert policy.approved_app_ids == {OUTLOOK_MOBILE_APP_ID}
    assert [c.name for c in policy.approved_clients] == ["Outlook Mobile"]
    assert policy.mail_resources == {EXCHANGE_ONLINE_RESOURCE_ID}
    assert policy.risk_threshold == "medium"
    assert (policy.outlook_minimum.ios, policy.outlook_minimum.android) == ("4.2400", "4.2400")
    assert policy.allowlist.all_networks() == ()
    assert not policy.allowlist.users and not policy.allowlist.countries
    for rule_id in REGISTRY:
        settings = policy.rule(rule_id)
        assert settings.enabled and settings.severity is None
    mobile = policy.rule("unapproved-mobile-client")
    assert isinstance(mobile, UnapprovedMobileClientSettings) and not mobile.report_blocked_attempts


def test_shipped_policy_file_is_exactly_the_defaults() -> None:
    assert load_policy(REPO / "config" / "policy.yaml") == Policy()


def test_no_file_and_an_empty_file_mean_the_defaults(tmp_path: Path) -> None:
    assert load_policy(None) == Policy()
    assert load_policy(write(tmp_path, "")) == Policy()
    assert load_policy(write(tmp_path, "# nothing but a comment\n")) == Policy()


def test_every_rule_can_be_tuned_by_its_id() -> None:
    data = {"rules": {rule_id: {"enabled": False, "severity": "low"} for rule_id in REGISTRY}}
    policy = policy_from_data(data)
    for rule_id in REGISTRY:
        assert not policy.rule(rule_id).enabled
        assert policy.rule(rule_id).severity == "low"


def test_rule_specific_settings() -> None:
    policy = policy_from_data(
        {"rules": {"unapproved-mobile-client": {"report_blocked_attempts": True}}}
    )
    mobile = policy.rule("unapproved-mobile-client")
    assert isinstance(mobile, UnapprovedMobileClientSettings) and mobile.report_blocked_attempts
    assert policy.rule("legacy-auth") == Policy().rule("legacy-auth")


def test_effective_policy_round_trips_through_yaml() -> None:
    policy = policy_from_data(
        {
            "approved_clients": [
                {"app_id": OUTLOOK_MOBILE_APP_ID, "name": "Outlook Mobile"},
                {"app_id": IOS_ACCOUNTS_APP_ID, "name": "iOS Mail"},
            ],
            "risk_threshold": "high",
            "outlook_minimum": {"android": "4.2446.1"},
            "allowlist": {
                "users": ["svc-scanner@contoso.com"],
                "ips": ["203.0.113.7", "2001:db8::/32"],
                "named_networks": {"HQ": ["198.51.100.0/24"]},
                "countries": ["CH"],
            },
            "rules": {"legacy-auth": {"severity": "high"}},
        }
    )
    text = yaml.safe_dump(policy.effective(), sort_keys=False)
    assert policy_from_data(yaml.safe_load(text)) == policy


# Allowlist and case


def test_allowlist_ips_accept_addresses_and_cidrs() -> None:
    allow = policy_from_data(
        {
            "allowlist": {
                "ips": ["203.0.113.7", "198.51.100.7/24", "2001:db8::/32"],
                "named_networks": {"HQ": ["192.0.2.0/25"], "Lab": ["192.0.2.200"]},
            }
        }
    ).allowlist
    networks = allow.all_networks()

    def allowed(address: str) -> bool:
        return any(ipaddress.ip_address(address) in network for network in networks)

    assert allowed("203.0.113.7") and not allowed("203.0.113.8")  # one address is a /32
    assert allowed("198.51.100.200")  # host bits of a CIDR are ignored: the whole /24
    assert allowed("2001:db8::1") and not allowed("2001:db9::1")
    assert allowed("192.0.2.100") and allowed("192.0.2.200") and not allowed("192.0.2.150")


def test_users_app_ids_resources_and_countries_are_case_insensitive() -> None:
    policy = policy_from_data(
        {
            "approved_clients": [{"app_id": IOS_ACCOUNTS_APP_ID.upper()}],
            "mail_resources": [EXCHANGE_ONLINE_RESOURCE_ID.upper()],
            "allowlist": {
                "users": ["Adele.Vance@Contoso.COM", "0B9A2F60-1D4E-4B9C-8F0E-2A6C1D3E4F50"],
                "countries": ["ch", "Us"],
            },
        }
    )
    # the pipeline compares lower-case ids and UPNs and upper-case countries
    assert policy.approved_app_ids == {IOS_ACCOUNTS_APP_ID}
    assert policy.mail_resources == {EXCHANGE_ONLINE_RESOURCE_ID}
    assert policy.allowlist.users == {
        "adele.vance@contoso.com",
        "0b9a2f60-1d4e-4b9c-8f0e-2a6c1d3e4f50",
    }
    assert policy.allowlist.countries == {"CH", "US"}


# Bad files: one line, naming the file, the key and the reason

BAD = [
    pytest.param(
        "risk_treshold: high\n",
        "risk_treshold",
        "Extra inputs are not permitted",
        id="unknown top-level key",
    ),
    pytest.param(
        "rules:\n  legacy-auht:\n    enabled: false\n",
        "rules.legacy-auht",
        "unknown rule id; did you mean 'legacy-auth'? valid ids: ",
        id="unknown rule id",
    ),
    pytest.param(
        "rules:\n  legacy-auth:\n    report_blocked_attempts: true\n",
        "rules.legacy-auth.report_blocked_attempts",
        "Extra inputs are not permitted",
        id="another rule's option",
    ),
    pytest.param(
        "rules:\n  legacy-auth:\n    enabled: maybe\n",
        "rules.legacy-auth.enabled",
        "valid boolean",
        id="enabled not a boolean",
    ),
    pytest.param(
        "risk_threshold: extreme\n",
        "risk_threshold",
        "Input should be 'low', 'medium' or 'high'",
        id="bad threshold",
    ),
    pytest.param(
        "risk_threshold: none\n",
        "risk_threshold",
        "Input should be 'low', 'medium' or 'high'",
        id="threshold none would alert on everything",
    ),
    pytest.param(
        "allowlist:\n  ips: [203.0.113.0/33]\n",
        "allowlist.ips",
        "'203.0.113.0/33' does not appear to be an IPv4 or IPv6 network",
        id="bad CIDR",
    ),
    pytest.param(
        "allowlist:\n  ips: [10.0.0.256]\n",
        "allowlist.ips",
        "'10.0.0.256' does not appear to be an IPv4 or IPv6 network",
        id="bad address",
    ),
    pytest.param(
        "allowlist:\n  named_networks:\n    HQ: [198.51.100.0/24, office]\n",
        "allowlist.named_networks",
        "'office' does not appear to be an IPv4 or IPv6 network",
        id="bad named network",
    ),
    pytest.param(
        "allowlist:\n  countries: [CH, USA]\n",
        "allowlist.countries",
        "'USA' is not a two-letter country code",
        id="bad country code",
    ),
    pytest.param(
        "allowlist:\n  countries: ['1A']\n",
        "allowlist.countries",
        "'1A' is not a two-letter country code",
        id="country code with a digit",
    ),
    pytest.param(
        "approved_clients:\n  - app_id: 27922004-5251-4030-b22d-91ecd9a37ea\n",
        "approved_clients.0.app_id",
        "String should match pattern",
        id="malformed approved app id",
    ),
    pytest.param(
        "approved_clients:\n  - name: Outlook Mobile\n",
        "approved_clients.0.app_id",
        "Field required",
        id="approved client without app id",
    ),
    pytest.param(
        "outlook_minimum:\n  ios: latest\n",
        "outlook_minimum.ios",
        "String should match pattern",
        id="malformed outlook minimum",
    ),
    pytest.param(
        "outlook_minimum:\n  android: '4'\n",
        "outlook_minimum.android",
        "String should match pattern",
        id="outlook minimum without a build",
    ),
    pytest.param(
        "outlook_minimum:\n  ios: 4.2400\n",
        "outlook_minimum.ios",
        "Input should be a valid string",
        id="unquoted outlook minimum is a YAML float",
    ),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD)
def test_bad_policy_names_file_key_and_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}: {key}: ")
    assert reason in message


def test_readme_example_message_exactly(tmp_path: Path) -> None:
    path = write(tmp_path, "rules:\n  legacy-auth:\n    severity: urgent\n")
    assert load_error(path) == (
        f"{path}: rules.legacy-auth.severity: "
        "Input should be 'informational', 'low', 'medium', 'high' or 'critical'"
    )


def test_several_mistakes_report_the_first_and_count_the_rest(tmp_path: Path) -> None:
    path = write(tmp_path, "risk_threshold: extreme\nallowlist:\n  countries: [USA]\n")
    message = load_error(path)
    assert message.startswith(f"{path}: risk_threshold: ")
    assert message.endswith(" (+1 more)")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("risk_threshold: medium\nallowlist:\n  users: []\n\tips: []\n", 4),
        ("risk_threshold: medium\nallowlist:\n  ips: [203.0.113.0/24\nrules: {}\n", 4),
        ("risk_threshold: medium\nrules:\n  legacy-auth:\n    enabled: true\n   severity: x\n", 5),
    ],
)
def test_invalid_yaml_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    message = load_error(path)
    assert message.startswith(f"{path}: line {line}: invalid YAML: ")


@pytest.mark.parametrize(
    ("text", "kind"),
    [("- risk_threshold\n- medium\n", "list"), ("medium\n", "str"), ("42\n", "int")],
)
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str, kind: str) -> None:
    path = write(tmp_path, text)
    assert load_error(path) == f"{path}: (top level): expected a mapping, got {kind}"


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "policy.yaml"
    assert load_error(path) == f"{path}: cannot read: No such file or directory"


def test_directory_instead_of_a_file(tmp_path: Path) -> None:
    assert "cannot read" in load_error(tmp_path)


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "risk_threshold: m\u00e9dium\n".encode("latin-1"))
    load_error(path)

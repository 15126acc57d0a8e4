"""Alerts to Microsoft Sentinel: a custom Log Analytics table through the Logs Ingestion API.

Each alert becomes one flat row of ``TABLE_COLUMNS`` (the table, the data collection rule's
stream declaration and the setup in docs/forwarding.md all follow that constant), so analytics rules
query columns rather than parse JSON. The sink's ``format`` does not apply here.

The Azure SDKs are imported when a sink is built, not with this module: the policy loads
every sink's config, and a forwarder to another sink has no use for them.
"""

from __future__ import annotations

from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING, Any, Final, Literal

from pipeline.sinks import AlertDict, Refusal, SendError, SinkBase, SinkType

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential
    from azure.monitor.ingestion import LogsUploadError


class SentinelConfig(SinkBase):
    type: Literal["sentinel"]
    endpoint: str
    """Data collection endpoint (or the DCR's own logs ingestion endpoint)."""
    rule_id: str
    """The data collection rule's immutable id (``dcr-...``)."""
    stream: str = "Custom-SigninRiskAlerts_CL"


TABLE_COLUMNS: Final[dict[str, str]] = {
    "TimeGenerated": "datetime",
    "AlertId": "string",
    "Rule": "string",
    "Severity": "string",
    "Title": "string",
    "Summary": "string",
    "UserPrincipalName": "string",
    "UserId": "string",
    "IPAddress": "string",
    "Country": "string",
    "City": "string",
    "ClientFamily": "string",
    "ClientName": "string",
    "ClientPlatform": "string",
    "ClientVersion": "string",
    "RiskLevel": "string",
    "RiskState": "string",
    "MitreTechniques": "dynamic",
    "SigninIds": "dynamic",
    "Evidence": "dynamic",
    "TenantId": "string",
    "DetectedAt": "datetime",
    "NextSteps": "dynamic",
    "UserPage": "string",
    "SigninLink": "string",
    "SchemaVersion": "string",
}
"""The custom table's columns and their Log Analytics types, in row order."""

REFUSED = frozenset({400, 413})
"""The service rejected the rows themselves: malformed, or too large."""


def table_row(alert: AlertDict) -> dict[str, Any]:
    """The alert as a row of ``TABLE_COLUMNS``; fields held back by the sink's allow-list
    stay empty."""
    location = alert.get("location") or {}
    client = alert.get("client") or {}
    risk = alert.get("risk") or {}
    links = alert.get("links") or {}
    return {
        "TimeGenerated": alert["time"],
        "AlertId": alert["id"],
        "Rule": alert["rule"],
        "Severity": alert["severity"],
        "Title": alert["title"],
        "Summary": alert.get("summary", ""),
        "UserPrincipalName": alert.get("user", ""),
        "UserId": alert.get("user_id", ""),
        "IPAddress": alert.get("ip", ""),
        "Country": location.get("country", ""),
        "City": location.get("city", ""),
        "ClientFamily": client.get("family", ""),
        "ClientName": client.get("name", ""),
        "ClientPlatform": client.get("platform", ""),
        "ClientVersion": client.get("version", ""),
        "RiskLevel": risk.get("level", ""),
        "RiskState": risk.get("state", ""),
        "MitreTechniques": alert.get("mitre", []),
        "SigninIds": alert.get("signin_ids", []),
        "Evidence": alert.get("evidence", {}),
        "TenantId": alert.get("tenant_id", ""),
        "DetectedAt": alert.get("detected_at"),
        "NextSteps": alert.get("next_steps", []),
        "UserPage": links.get("user_page", ""),
        "SigninLink": links.get("signin", ""),
        "SchemaVersion": alert.get("schema_version", ""),
    }


class SentinelSink:
    """One ``upload`` per batch; the SDK splits it into gzip chunks of up to 1 MB."""

    def __init__(
        self,
        name: str,
        config: SentinelConfig,
        *,
        credential: AsyncTokenCredential | None = None,
        connection_verify: str | None = None,
    ) -> None:
        """``credential`` defaults to ``DefaultAzureCredential`` (managed identity, workload
        identity, environment, Azure CLI); ``connection_verify`` is a CA bundle path."""
        from azure.identity.aio import DefaultAzureCredential
        from azure.monitor.ingestion.aio import LogsIngestionClient

        self.name = name
        self.max_batch = config.max_batch
        self._config = config
        self._own_credential = credential is None
        self._credential = credential or DefaultAzureCredential()
        tls = {} if connection_verify is None else {"connection_verify": connection_verify}
        self._client = LogsIngestionClient(
            config.endpoint,
            self._credential,
            # The forwarder retries with backoff and counts each failure; the SDK's own
            # retries (and its 300 s default timeouts) would hide an outage from the metrics.
            retry_total=0,
            connection_timeout=5.0,
            read_timeout=30.0,
            **tls,
        )

    async def send(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        """Upload the batch. A chunk answered 400/413 is refused row by row (the service does
        not say which row); anything else (401/403, 429, 5xx, network) raises with ``done`` =
        rows in the chunks before, which the service accepted."""
        from azure.core.exceptions import HttpResponseError

        rows: list[MutableMapping[str, Any]] = [table_row(alert) for alert in alerts]
        position = {id(row): index for index, row in enumerate(rows)}
        refused: list[Refusal] = []

        async def on_error(failure: LogsUploadError) -> None:
            indexes = [position[id(row)] for row in failure.failed_logs]
            error = failure.error
            if isinstance(error, HttpResponseError) and error.status_code in REFUSED:
                reason = _describe(error)
                refused.extend(Refusal(index, reason) for index in indexes)
                return
            # Raising stops the upload: later chunks would be out of order on a retry.
            raise SendError(_describe(error), indexes[0], refused)

        await self._client.upload(
            rule_id=self._config.rule_id,
            stream_name=self._config.stream,
            logs=rows,
            on_error=on_error,
        )
        return refused

    async def close(self) -> None:
        await self._client.close()
        if self._own_credential:
            await self._credential.close()


def _describe(error: Exception) -> str:
    """A one-line account of a failed chunk: the status and the service's error code."""
    from azure.core.exceptions import HttpResponseError

    if isinstance(error, HttpResponseError) and error.status_code is not None:
        code = error.error.code if error.error is not None else error.reason
        return f"sentinel answered {error.status_code}: {code}"
    first_line = str(error).strip().split("\n", 1)[0][:200]
    return f"sentinel upload failed ({type(error).__name__}: {first_line})"


SINK = SinkType(SentinelConfig, lambda name, config, _: SentinelSink(name, config), order=3)

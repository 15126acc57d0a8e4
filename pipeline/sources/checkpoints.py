"""Where the Event Hubs bridge keeps its checkpoints and partition ownership.

``sqlite`` is a local file for one host (several bridge processes on it share partitions
through the SDK's load balancing, with optimistic concurrency on each claim's etag);
``blob`` is Azure Blob Storage, for bridges on many hosts.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from azure.eventhub.aio import CheckpointStore

from pipeline.runtime.files import DEFAULT_MODE, SQLITE_SIDECARS, make_private
from pipeline.runtime.settings import Settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ownership (
    namespace TEXT, hub TEXT, consumer_group TEXT, partition_id TEXT,
    owner_id TEXT, last_modified_time REAL, etag TEXT,
    PRIMARY KEY (namespace, hub, consumer_group, partition_id));
CREATE TABLE IF NOT EXISTS checkpoint (
    namespace TEXT, hub TEXT, consumer_group TEXT, partition_id TEXT,
    offset TEXT, sequence_number INTEGER,
    PRIMARY KEY (namespace, hub, consumer_group, partition_id));
"""
_KEY = ("fully_qualified_namespace", "eventhub_name", "consumer_group", "partition_id")


class SqliteCheckpointStore(CheckpointStore):
    """The SDK's checkpoint-store contract over one SQLite file.

    Ownership times are epoch seconds (floats): the SDK's load balancer adds a timeout to
    them, whatever its docstring says.

    The file gets ``mode`` (``SIGNIN_RISK_FILE_MODE``) before SQLite opens it, because
    SQLite creates its journal and WAL with the database file's mode and would otherwise
    create all of them 0644.
    """

    def __init__(self, path: str | Path, mode: int = DEFAULT_MODE) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        make_private(path, mode, SQLITE_SIDECARS)
        # The SDK calls the store from one event loop; short writes, so no thread pool.
        self._db = sqlite3.connect(str(path), isolation_level=None, timeout=10)
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    async def list_ownership(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **_: Any
    ) -> list[dict[str, Any]]:
        hub = (fully_qualified_namespace, eventhub_name, consumer_group)
        return self._select("ownership", ("owner_id", "last_modified_time", "etag"), hub)

    async def claim_ownership(
        self, ownership_list: Iterable[dict[str, Any]], **_: Any
    ) -> list[dict[str, Any]]:
        """Claims that won: a claim carries the etag it read, and loses if the row moved on."""
        won = []
        for claim in ownership_list:
            key = tuple(claim[k] for k in _KEY)
            etag, now = str(uuid.uuid4()), time.time()
            with self._db:
                if claim.get("etag"):
                    changed = self._db.execute(
                        "UPDATE ownership SET owner_id = ?, last_modified_time = ?, etag = ?"
                        " WHERE namespace = ? AND hub = ? AND consumer_group = ?"
                        " AND partition_id = ? AND etag = ?",
                        (claim["owner_id"], now, etag, *key, claim["etag"]),
                    ).rowcount
                else:
                    changed = self._db.execute(
                        "INSERT OR IGNORE INTO ownership VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (*key, claim["owner_id"], now, etag),
                    ).rowcount
            if changed == 1:
                won.append(dict(claim, etag=etag, last_modified_time=now))
        return won

    async def update_checkpoint(self, checkpoint: dict[str, Any], **_: Any) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO checkpoint VALUES (?, ?, ?, ?, ?, ?)",
            (
                *(checkpoint[k] for k in _KEY),
                str(checkpoint["offset"]),
                checkpoint["sequence_number"],
            ),
        )

    async def list_checkpoints(
        self, fully_qualified_namespace: str, eventhub_name: str, consumer_group: str, **_: Any
    ) -> list[dict[str, Any]]:
        hub = (fully_qualified_namespace, eventhub_name, consumer_group)
        return self._select("checkpoint", ("offset", "sequence_number"), hub)

    def _select(
        self, table: str, columns: tuple[str, ...], hub: tuple[str, str, str]
    ) -> list[dict[str, Any]]:
        """Rows of one hub and consumer group as the SDK's dicts (columns named as its keys)."""
        rows = self._db.execute(
            f"SELECT partition_id, {', '.join(columns)} FROM {table}"
            " WHERE namespace = ? AND hub = ? AND consumer_group = ?",
            hub,
        )
        return [
            dict(zip(_KEY, (*hub, pid), strict=True)) | dict(zip(columns, rest, strict=True))
            for pid, *rest in rows
        ]


def checkpoint_store(settings: Settings) -> Any:
    """The configured store; Blob with a connection string or with Entra ID."""
    if settings.eventhub_checkpoint_store == "sqlite":
        return SqliteCheckpointStore(settings.eventhub_checkpoint_path, settings.file_mode_bits)
    from azure.eventhub.extensions.checkpointstoreblobaio import BlobCheckpointStore

    secret = settings.eventhub_blob_connection_string.get_secret_value()
    if secret:
        return BlobCheckpointStore.from_connection_string(secret, settings.eventhub_blob_container)
    if not settings.eventhub_blob_account_url:
        raise ValueError(
            "eventhub_checkpoint_store=blob needs SIGNIN_RISK_EVENTHUB_BLOB_CONNECTION_STRING "
            "or SIGNIN_RISK_EVENTHUB_BLOB_ACCOUNT_URL"
        )
    from azure.identity.aio import DefaultAzureCredential

    return BlobCheckpointStore(
        settings.eventhub_blob_account_url,
        settings.eventhub_blob_container,
        credential=DefaultAzureCredential(),
    )

"""The local checkpoint store keeps the SDK's contract: etag-guarded claims, resumable offsets."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.eventhub import EventData

from pipeline.sources.checkpoints import SqliteCheckpointStore
from pipeline.sources.eventhub import event_body, starting_position

HUB = {"fully_qualified_namespace": "ns", "eventhub_name": "hub", "consumer_group": "$Default"}


def claim(partition: str, owner: str, etag: str | None = None) -> dict[str, Any]:
    return {**HUB, "partition_id": partition, "owner_id": owner, "etag": etag}


def test_a_claim_wins_only_with_the_etag_it_read(tmp_path: Path) -> None:
    async def scenario() -> None:
        first = SqliteCheckpointStore(tmp_path / "c.sqlite")
        second = SqliteCheckpointStore(tmp_path / "c.sqlite")  # another bridge on the host
        won = await first.claim_ownership([claim("0", "a"), claim("1", "a")])
        assert [c["partition_id"] for c in won] == ["0", "1"]
        # b read nothing yet (no etag): the row exists, so its claim loses
        assert await second.claim_ownership([claim("0", "b")]) == []
        listed = {o["partition_id"]: o for o in await second.list_ownership(**HUB)}
        assert listed["0"]["owner_id"] == "a"
        assert isinstance(listed["0"]["last_modified_time"], float)  # the SDK adds seconds to it
        # b steals with the current etag; a's stale etag then loses
        stolen = await second.claim_ownership([claim("0", "b", listed["0"]["etag"])])
        assert [c["owner_id"] for c in stolen] == ["b"]
        assert await first.claim_ownership([claim("0", "a", won[0]["etag"])]) == []
        first.close()
        second.close()

    asyncio.run(scenario())


def test_checkpoints_survive_a_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        store = SqliteCheckpointStore(tmp_path / "c.sqlite")
        await store.update_checkpoint(
            {**HUB, "partition_id": "1", "offset": "7556", "sequence_number": 41}
        )
        await store.update_checkpoint(
            {**HUB, "partition_id": "1", "offset": "7700", "sequence_number": 42}
        )
        store.close()
        again = SqliteCheckpointStore(tmp_path / "c.sqlite")
        (point,) = await again.list_checkpoints(**HUB)
        assert (point["partition_id"], point["offset"], point["sequence_number"]) == (
            "1",
            "7700",
            42,
        )
        assert await again.list_checkpoints("ns", "other-hub", "$Default") == []
        again.close()

    asyncio.run(scenario())


def test_starting_positions() -> None:
    assert starting_position("earliest") == "-1"
    assert starting_position("latest") == "@latest"
    assert starting_position("2026-01-15T10:00:00+00:00") == datetime(2026, 1, 15, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="time zone"):
        starting_position("2026-01-15T10:00:00")
    with pytest.raises(ValueError, match="eventhub_starting_position"):
        starting_position("yesterday")


def test_event_bodies_pass_through_byte_for_byte() -> None:
    raw = b'{"records": [\xff]}'
    assert event_body(EventData(raw)) == raw

"""Alert sinks: where ``signin-risk forward`` delivers the alerts topic.

The forwarder owns the buffer, the retries, the circuit breaker and the dead-letter topic;
a sink only turns a batch of alerts into requests to its receiver and says what happened.
Its offsets are committed only after every alert of a batch was delivered or refused for
good, so every alert arrives at least once and its id lets the receiver drop repeats.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

AlertDict = dict[str, Any]
"""An alert as decoded from the alerts topic, after the sink's privacy controls: the JSON
mapping of a ``pipeline.records.Alert``, which is what formats, privacy and sinks handle."""


@dataclass(frozen=True, slots=True)
class Refusal:
    """The receiver refused the alert at ``index`` of the batch for good (a 4xx answer):
    sending it again cannot help, so it goes to the sink's dead-letter topic."""

    index: int
    reason: str


class SendError(Exception):
    """A transient failure (connection lost, 5xx, 429, timeout): retry later.

    ``done`` alerts at the head of the batch were already dealt with (delivered, or refused
    and listed in ``refused``), so the retry starts after them and a chat channel does not
    get the same message twice. Any other exception from ``send`` means ``done=0``.
    """

    def __init__(self, message: str, done: int = 0, refused: Sequence[Refusal] = ()) -> None:
        super().__init__(message)
        self.done = done
        self.refused = tuple(refused)


class Sink(Protocol):
    name: str
    max_batch: int
    """Alerts per ``send`` at most."""

    async def send(self, alerts: Sequence[AlertDict]) -> list[Refusal]:
        """Deliver ``alerts`` in order; return the ones refused for good, or raise."""

    async def close(self) -> None: ...

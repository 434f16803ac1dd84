"""What the vault needs from storage, as a Protocol: every sealed blob, in bulk.

Start-up asks which master keys the stored secrets were sealed under, and
`ctsd rotate-key` re-seals all of them in one transaction. The store
implements this (`ctsd.store.sealed_secrets.SealedSecretRepository`); the
vault never imports the store.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class StoredBlob:
    connection_id: str
    field: str
    key_id: str
    blob: bytes


class SealedSecretStore(Protocol):
    async def key_ids(self) -> set[str]:
        """The ids (hex) of every master key some stored secret is sealed under."""
        ...

    async def reseal_all(self, reseal: Callable[[StoredBlob], tuple[str, bytes]]) -> int:
        """Replaces every blob by `reseal(blob)` -> (key_id, blob), all or nothing;
        returns how many."""
        ...

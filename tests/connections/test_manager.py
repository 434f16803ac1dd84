"""ConnectionManager in process: validation, sealing, etags, predefined and engine guards."""

from __future__ import annotations

import asyncio

import pytest

from ctsd.connections.model import ApiType, ConnectionPatch, CredentialField, CredentialsInput
from ctsd.errors import AlreadyExists, EtagMismatch, FailedPrecondition, InvalidArgument, NotFound
from tests.connections.conftest import T0, Domain, draft

pytestmark = pytest.mark.asyncio


async def test_create_seals_the_credentials_and_answers_only_a_hint(domain: Domain) -> None:
    made = await domain.manager.create(draft(), "main")
    assert (made.id, made.revision, made.created_at) == ("main", 1, T0)
    assert made.credentials.api_key_hint == "****6789" and made.credentials.api_secret_set
    assert await domain.manager.get("main") == made
    blob = await domain.repository.sealed_secret("main", CredentialField.API_SECRET)
    assert blob is not None and b"the-secret" not in blob
    assert domain.keyring.open("main", "api_secret", blob) == "the-secret"


async def test_validate_only_stores_nothing_and_an_id_is_generated(domain: Domain) -> None:
    checked = await domain.manager.create(draft(), "", validate_only=True)
    assert checked.id.startswith("c-")
    with pytest.raises(NotFound):
        await domain.manager.get(checked.id)
    made = await domain.manager.create(draft(), "")
    assert made.id.startswith("c-") and made.id != checked.id


async def test_every_bad_field_is_named_at_once(domain: Domain) -> None:
    bad = draft(" ", exchange="binance", api_type=ApiType.OPTIONS, testnet=False,
                credentials=CredentialsInput(api_key="has space", api_secret=None))
    with pytest.raises(InvalidArgument) as caught:
        await domain.manager.create(bad, "9-starts-with-a-digit")
    assert {v.field for v in caught.value.violations} == {
        "connection_id", "connection.display_name", "connection.credentials.api_key",
        "connection.credentials.api_secret"}
    assert "has space" not in str(caught.value)  # a credential is never echoed


async def test_ids_and_display_names_are_unique(domain: Domain) -> None:
    await domain.manager.create(draft("One"), "one")
    with pytest.raises(AlreadyExists):
        await domain.manager.create(draft("Two"), "one")
    with pytest.raises(AlreadyExists, match="display name 'One'"):
        await domain.manager.create(draft("One"), "two")


async def test_an_update_needs_the_current_etag_or_none(domain: Domain) -> None:
    made = await domain.manager.create(draft(), "main")
    domain.tick()
    renamed = await domain.manager.update("main", ConnectionPatch(display_name="Renamed"),
                                          made.etag)
    assert (renamed.display_name, renamed.revision) == ("Renamed", 2)
    assert renamed.updated_at > renamed.created_at and renamed.etag != made.etag
    with pytest.raises(EtagMismatch):
        await domain.manager.update("main", ConnectionPatch(enabled=False), made.etag)
    disabled = await domain.manager.set_enabled("main", False, "")
    assert not disabled.enabled and disabled.revision == 3


async def test_concurrent_updates_without_etags_both_apply(domain: Domain) -> None:
    await domain.manager.create(draft(), "main")
    await asyncio.gather(
        domain.manager.update("main", ConnectionPatch(display_name="Renamed"), ""),
        domain.manager.update("main", ConnectionPatch(enabled=False), ""))
    final = await domain.manager.get("main")
    assert (final.display_name, final.enabled, final.revision) == ("Renamed", False, 3)


async def test_a_new_key_replaces_the_hint_and_an_emptied_one_is_refused(domain: Domain) -> None:
    await domain.manager.create(draft(), "main")
    rekeyed = await domain.manager.update(
        "main", ConnectionPatch(credentials=CredentialsInput(api_key="BKEY-9876543210")), "")
    assert rekeyed.credentials.api_key_hint == "****3210"
    with pytest.raises(InvalidArgument) as caught:
        await domain.manager.update(
            "main", ConnectionPatch(credentials=CredentialsInput(api_secret="")), "")
    assert [v.field for v in caught.value.violations] == ["connection.credentials.api_secret"]


async def test_predefined_needs_force_and_a_running_engine_blocks_deletion(
    domain: Domain,
) -> None:
    kept = await domain.manager.create(draft("Kept", predefined=True), "kept")
    with pytest.raises(FailedPrecondition, match="predefined"):
        await domain.manager.delete("kept", kept.etag, force=False)
    await domain.manager.create(draft("Busy"), "busy")
    domain.engines.add("busy")
    with pytest.raises(FailedPrecondition, match="cts engine stop busy"):
        await domain.manager.delete("busy", "", force=True)
    domain.engines.clear()
    await domain.manager.delete("busy", "", force=False)
    await domain.manager.delete("kept", kept.etag, force=True)
    assert (await domain.manager.list_connections("", 0, "")).total_size == 0


async def test_listing_filters_and_pages_with_tokens_bound_to_the_filter(domain: Domain) -> None:
    for i in range(5):
        await domain.manager.create(draft(f"C{i}", enabled=i != 2), f"c{i}")
    first = await domain.manager.list_connections("enabled = true", 3, "")
    assert ([c.id for c in first.connections], first.total_size) == (["c0", "c1", "c3"], 4)
    rest = await domain.manager.list_connections("enabled = true", 3, first.next_page_token)
    assert [c.id for c in rest.connections] == ["c4"] and rest.next_page_token == ""
    with pytest.raises(InvalidArgument, match="different filter"):
        await domain.manager.list_connections("", 3, first.next_page_token)
    assert [s.id for s in domain.manager.exchanges()] == ["binance", "bybit", "okx", "kraken"]

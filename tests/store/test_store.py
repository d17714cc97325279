"""The store against SQLite and real PostgreSQL (skipped, saying so, when no server is reachable)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from inferstack.secrets_at_rest import TokenCipher, TokenUnreadable
from inferstack.spec import DeploymentSpec, ReplicaStatus
from inferstack.store import DuplicateName, KeysDiffer, ReplicaRow, Store, hash_key


def spec(**fields: object) -> DeploymentSpec:
    return DeploymentSpec.model_validate({"hf_model_id": "org/model", "hardware_profile": "cpu", **fields})


def test_keys_are_stored_hashed_and_resolve_to_their_tenant(store: Store) -> None:
    tenant, key = store.create_key("acme", now=1.0)
    again, other_key = store.create_key("acme", now=2.0)
    assert tenant == again and key != other_key
    grant = store.grant_for_key_hash(hash_key(key))
    assert grant is not None and grant.tenant_id == tenant
    assert store.grant_for_key_hash(hash_key("isk-guess")) is None
    with store.engine.connect() as connection:
        stored = " ".join(str(row) for row in connection.execute(text("select * from api_keys")))
    assert key not in stored


def test_deployments_round_trip_and_keep_the_token_out_of_the_spec(store: Store) -> None:
    tenant, _ = store.create_key("acme", now=1.0)
    row = store.create_deployment(tenant, spec(name="chat", hf_token="hf_topsecret", max_replicas=3), now=5.0)
    loaded = store.get_deployment(row.id)
    assert loaded is not None and loaded.name == "chat" and loaded.status == "created"
    assert "hf_topsecret" not in str(loaded.spec)
    restored = store.deployment_spec(loaded)
    assert restored.max_replicas == 3 and restored.hf_token is not None
    assert restored.hf_token.get_secret_value() == "hf_topsecret"
    assert [d.id for d in store.list_deployments(tenant)] == [row.id]


def test_the_token_column_holds_ciphertext_that_only_this_key_opens(store: Store) -> None:
    tenant, _ = store.create_key("acme", now=1.0)
    row = store.create_deployment(tenant, spec(name="chat", hf_token="hf_topsecret"), now=5.0)
    store.save_spec(row.id, spec(name="chat", hf_token="hf_rotated"), now=6.0)
    with store.engine.connect() as connection:
        (raw,) = connection.execute(text("select hf_token from deployments")).one()
        everything = " ".join(str(r) for r in connection.execute(text("select * from deployments")))
    assert "hf_topsecret" not in everything and "hf_rotated" not in everything and raw.startswith("gAAAAA")
    loaded = store.get_deployment(row.id)
    assert loaded is not None
    assert store.deployment_spec(loaded).hf_token.get_secret_value() == "hf_rotated"  # type: ignore[union-attr]
    other = Store(store.url, TokenCipher.ephemeral())
    try:
        with pytest.raises(TokenUnreadable, match="another key"):
            other.deployment_spec(loaded)
    finally:
        other.engine.dispose()


def test_a_name_is_unique_per_tenant_only(store: Store) -> None:
    acme, _ = store.create_key("acme", now=1.0)
    other, _ = store.create_key("other", now=1.0)
    store.create_deployment(acme, spec(name="chat"), now=1.0)
    with pytest.raises(DuplicateName):
        store.create_deployment(acme, spec(name="chat"), now=2.0)
    store.create_deployment(other, spec(name="chat"), now=2.0)
    first = store.list_deployments(acme)[0]
    store.update_deployment(first.id, status="deleted")
    again = store.create_deployment(acme, spec(name="chat"), now=3.0)  # a deleted name is free again
    assert again.id != first.id


def test_replicas_left_live_by_a_dead_control_plane_are_marked_stopped(store: Store) -> None:
    tenant, _ = store.create_key("acme", now=1.0)
    row = store.create_deployment(tenant, spec(), now=1.0)
    store.add_replica(ReplicaRow(id="rep-1", deployment_id=row.id, status=ReplicaStatus.ready, created_at=1.0))
    store.add_replica(ReplicaRow(id="rep-2", deployment_id=row.id, status=ReplicaStatus.failed, created_at=1.0))
    assert store.mark_orphaned_replicas(now=9.0, reason="control plane restarted") == 1
    assert store.list_replicas(row.id, live_only=True) == []
    statuses = {r.id: (r.status, r.reason) for r in store.list_replicas(row.id)}
    assert statuses["rep-1"] == ("stopped", "control plane restarted")


def test_events_come_back_oldest_first_with_their_numbers(store: Store) -> None:
    tenant, _ = store.create_key("acme", now=1.0)
    row = store.create_deployment(tenant, spec(), now=1.0)
    for i in range(3):
        store.add_event(row.id, at=10.0 + i, kind="scaled", message=f"step {i}", data={"rps": 1.5 * i})
    events = store.list_events(row.id, limit=2)
    assert [e.message for e in events] == ["step 1", "step 2"]
    assert events[1].data == {"rps": 3.0}


def test_replica_keys_are_sealed_at_rest_and_opened_only_under_the_shared_key(store: Store) -> None:
    tenant, _ = store.create_key("acme", now=1.0)
    row = store.create_deployment(tenant, spec(), now=1.0)
    store.check_sealing_key()  # the first instance on the database leaves its check
    store.add_replica(ReplicaRow(id="rep-1", deployment_id=row.id, status=ReplicaStatus.ready, url="http://r",
                                 api_key="replica-key-0123456789", created_at=1.0))
    with store.engine.connect() as connection:
        [stored] = [r[0] for r in connection.execute(text("select api_key from replicas"))]
    assert "replica-key-0123456789" not in stored and stored.startswith("gAAAAA")
    assert [r.api_key for r in store.live_replicas()] == ["replica-key-0123456789"]  # what the gateway sends

    other = Store(store.url, TokenCipher.from_secret("another-instance-with-its-own-key"))
    try:
        with pytest.raises(KeysDiffer, match="same INFERSTACK_TOKEN_KEY"):
            other.check_sealing_key()
    finally:
        other.engine.dispose()


def test_instances_sharing_a_token_key_open_each_others_replica_keys(store: Store) -> None:
    secret = "a-shared-secret-from-the-secret-store"
    first, second = (Store(store.url, TokenCipher.from_secret(secret)) for _ in range(2))
    try:
        first.check_sealing_key()
        second.check_sealing_key()
        tenant, _ = first.create_key("acme", now=1.0)
        row = first.create_deployment(tenant, spec(), now=1.0)
        first.add_replica(ReplicaRow(id="rep-1", deployment_id=row.id, status=ReplicaStatus.ready, url="http://r",
                                     api_key="replica-key-0123456789", created_at=1.0))
        assert [r.api_key for r in second.live_replicas()] == ["replica-key-0123456789"]
    finally:
        first.engine.dispose()
        second.engine.dispose()

"""The signing order as turns (portal/store/turns.py): who is invited when a transaction
starts and after each completed signing session (Store.complete_signing), for grouped
orders, on the real store (SQLite)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from portal.store import NewDocument, NewSigner, SignerStatus, Store
from portal.store.turns import SigningOrder, turns_of


def _create(store: Store, turns: list[int]) -> str:
    people = [NewSigner(f"P{i}", f"p{i}@example.test", "", "en") for i in range(len(turns))]
    tx = store.create_transaction(
        title="t", requester_name="r", requester_email="r@example.test",
        documents=[NewDocument("a.pdf", "0" * 64, 1, 1)], signers=people, sequential=True,
        expires_in=dt.timedelta(days=1), qualified=False, messaging=False, level="B-B",
        turns=turns)
    return tx.id


def _sign(store: Store, tx_id: str, position: int) -> list[int]:
    """The signer at `position` consents, accepts and completes a signing session through
    the store's own calls (as the portal does after the checks on the signature); the
    positions of the signers whose turn came with it."""
    tx = store.transaction(tx_id)
    signer = tx.signers[position]
    store.record_consents(signer.id, 0, [("privacy", "1", "en", "0" * 64)])
    store.accept(signer.id, 0)
    doc = tx.documents[0]
    session = store.open_signing_session(
        signer.id, 0, certificate=b"certificate", chain=[],
        documents=[(doc.id, doc.current.version, "f" * 64)], hashes=["aGFzaA=="],
        ttl=dt.timedelta(minutes=10))
    _, invited = store.complete_signing(session.id, signer.id, 0,
                                        signed=[(doc.id, "e" * 64, 2)],
                                        certificate_sha256="d" * 64)
    assert all(s.status is SignerStatus.INVITED for s in invited)
    return [s.position for s in invited]


def test_turns_of_each_order() -> None:
    assert turns_of(SigningOrder.PARALLEL, 3) == [0, 0, 0]
    assert turns_of(SigningOrder.SEQUENTIAL, 3) == [0, 1, 2]
    assert turns_of(SigningOrder.GROUPS, 3, [2, 1, 2]) == [2, 1, 2]
    with pytest.raises(ValueError, match="group"):
        turns_of(SigningOrder.GROUPS, 2, [1, None])


def test_groups_sign_in_parallel_and_follow_each_other(tmp_path: Path) -> None:
    store = Store.open(None, tmp_path)
    try:
        tx_id = _create(store, [1, 1, 2, 3])
        statuses = [s.status for s in store.transaction(tx_id).signers]
        assert statuses == [SignerStatus.INVITED, SignerStatus.INVITED,
                            SignerStatus.WAITING, SignerStatus.WAITING]
        assert _sign(store, tx_id, 0) == []  # the first group is not done yet
        assert _sign(store, tx_id, 1) == [2]
        assert _sign(store, tx_id, 2) == [3]
        assert _sign(store, tx_id, 3) == []
        assert store.transaction(tx_id).status.value == "completed"
    finally:
        store.close()


def test_a_later_group_listed_first_waits(tmp_path: Path) -> None:
    store = Store.open(None, tmp_path)
    try:
        tx_id = _create(store, [2, 1])
        assert [s.status for s in store.transaction(tx_id).signers] == [
            SignerStatus.WAITING, SignerStatus.INVITED]
        assert _sign(store, tx_id, 1) == [0]
    finally:
        store.close()

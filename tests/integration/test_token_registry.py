"""The token registry over real PC/SC: discovery, hot-plug, pcscd restarts,
serialisation of concurrent callers, removal and reset during operations."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from smartcard.scard import SCARD_RESET_CARD

from agent.identity.enrolment import key_material
from agent.tokens.errors import NotAuthenticated, TokenNotFound, TokenRemoved
from agent.tokens.model import EventKind, KeyType, Route, SignatureAlgorithm, Token, TokenEvent
from agent.tokens.pkcs11 import Pkcs11Module
from agent.tokens.registry import AtrProfile, AtrProfiles, TokenRegistry
from firmware_sim.card import manufacture
from tests.support import piv_apdus as piv
from tests.support.pcsc import PrivatePcscd, RunningCard, connect
from tests.support.provision import PyscardConnection
from tests.support.waiting import DEADLINE, StateNotReached, wait_until, wait_until_async

T = TypeVar("T")
OPENSC = "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so"
ECDSA_SHA256 = SignatureAlgorithm.parse("ECDSA_SHA256")
DIGEST = hashlib.sha256(b"qsign registry test").digest()
PIN = "123456"
VERIFY_PIN = "200080"  # INS P1 P2 as the card logs them


def run(coro_fn: Callable[[TokenRegistry], object], **kwargs: object) -> object:
    async def main() -> object:
        async with TokenRegistry(**kwargs) as registry:  # type: ignore[arg-type]
            return await coro_fn(registry)  # type: ignore[misc]

    return asyncio.run(main())


async def _next(events: asyncio.Queue[TokenEvent], timeout: float = DEADLINE) -> TokenEvent:
    return await asyncio.wait_for(events.get(), timeout)


def _only_token(registry: TokenRegistry) -> str:
    tokens = registry.tokens()
    assert len(tokens) == 1, tokens
    return tokens[0].id


def _verify(spki: bytes, signature: bytes) -> None:
    key = serialization.load_der_public_key(spki)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(signature, b"qsign registry test", ec.ECDSA(hashes.SHA256()))


def test_registry_lists_the_card_and_signs(simulated_card: RunningCard) -> None:
    async def scenario(registry: TokenRegistry) -> None:
        token_id = _only_token(registry)
        info = registry.info(token_id)
        serial = str(simulated_card.control("status")["serial"])
        assert info.serial == serial
        assert info.reader == simulated_card.reader
        assert [r.kind for r in info.routes] == [Route.PIV_PCSC]
        assert info.profile == "qsign simulated PIV card"
        spki = await registry.call(token_id, lambda t: t.generate_key("9C", KeyType.EC_P256))
        credentials = await registry.call(token_id, lambda t: t.credentials())
        assert [(c.id, c.key_type, c.pin_always) for c in credentials] == [
            ("9C", KeyType.EC_P256, True)]
        signature = await registry.call(
            token_id, lambda t: t.sign_digest("9C", DIGEST, ECDSA_SHA256, pin=PIN))
        _verify(spki, signature)

    run(scenario)


def test_unknown_atr_is_probed_not_refused(simulated_card: RunningCard) -> None:
    """With no ATR table at all, SELECT PIV still finds the card; a 'pkcs11' profile
    leaves it to the modules."""

    async def probed(registry: TokenRegistry) -> None:
        token_id = _only_token(registry)
        assert registry.info(token_id).profile is None
        assert (await registry.call(token_id, lambda t: t.pin_status())).retries_left == 3

    run(probed, atr_profiles=AtrProfiles([]))

    atr = bytes.fromhex(str(registry_atr(simulated_card)))
    left_alone = AtrProfiles([AtrProfile("test", "pkcs11", atr, b"\xff" * len(atr))])

    async def skipped(registry: TokenRegistry) -> None:
        assert registry.tokens() == []

    run(skipped, atr_profiles=left_alone)


def registry_atr(card: RunningCard) -> str:
    connection = connect(card.reader)
    atr = bytes(connection.getATR()).hex()
    connection.disconnect()
    return atr


def test_hot_plug_events_in_order_and_signing_afterwards(simulated_card: RunningCard) -> None:
    async def scenario(registry: TokenRegistry) -> None:
        events = registry.subscribe()
        token_id = _only_token(registry)
        spki = await registry.call(token_id, lambda t: t.generate_key("9A", KeyType.EC_P256))
        await asyncio.to_thread(simulated_card.remove)
        removed = await _next(events)
        assert (removed.kind, removed.token_id) == (EventKind.REMOVED, token_id)
        with pytest.raises(TokenNotFound):
            await registry.call(token_id, lambda t: t.credentials())
        await asyncio.to_thread(simulated_card.insert)
        inserted = await _next(events)
        assert (inserted.kind, inserted.token_id) == (EventKind.INSERTED, token_id)
        signature = await registry.call(
            token_id, lambda t: t.sign_digest("9A", DIGEST, ECDSA_SHA256, pin=PIN))
        _verify(spki, signature)
        assert events.empty()

    run(scenario)


def test_registry_recovers_after_pcscd_restart(pcscd: PrivatePcscd,
                                               simulated_card: RunningCard) -> None:
    async def scenario(registry: TokenRegistry) -> None:
        events = registry.subscribe()
        token_id = _only_token(registry)
        await asyncio.to_thread(pcscd.restart)
        kinds = [(await _next(events)).kind for _ in range(2)]
        assert kinds == [EventKind.REMOVED, EventKind.INSERTED]
        status = await registry.call(token_id, lambda t: t.pin_status())
        assert status.retries_left == 3

    run(scenario)


def test_both_routes_come_back_after_pcscd_restart(
    pcscd: PrivatePcscd, simulated_card: RunningCard, manufacturer: object, tmp_path: Path
) -> None:
    """OpenSC keeps a dead PC/SC context and the cards it saw until re-initialised: after
    pcscd restarts with another card in the reader, its route must show the new card."""
    opensc = Pkcs11Module(OPENSC)

    async def scenario(registry: TokenRegistry) -> None:
        old_id = _only_token(registry)
        assert len(registry.info(old_id).routes) == 2
        await asyncio.to_thread(pcscd.restart)
        await asyncio.to_thread(simulated_card.stop)
        manufacture(tmp_path / "other.json")
        other = RunningCard(tmp_path / "other.json", pcscd.port, simulated_card.reader,
                            tmp_path / "other.sock")
        await asyncio.to_thread(other.start)
        try:
            async def swapped() -> bool:
                await registry.settle()
                tokens = registry.tokens()
                return len(tokens) == 1 and tokens[0].id != old_id and len(tokens[0].routes) == 2

            await wait_until_async(swapped, "the other card on both routes", interval=0.1)
            (token,) = registry.tokens()
            assert token.id != old_id
            assert sorted(r.kind for r in token.routes) == [Route.PIV_PCSC, Route.PKCS11]
            guid = await registry.call(token.id, lambda t: getattr(t, "chuid_guid", None))
            slots = await asyncio.to_thread(opensc.present_slots)
            (slot,) = [s for s in slots if s.description.strip() == other.reader]
            # OpenSC names a PIV token by the last 8 bytes of its CHUID GUID.
            assert guid and guid.endswith(slot.serial.strip().lower()), (guid, slot.serial)
        finally:
            await asyncio.to_thread(other.stop)

    # A slow poll: OpenSC must not be woken by polling between the restart and the swap.
    run(scenario, pkcs11_modules=[opensc], pkcs11_poll_interval=5.0)


@pytest.fixture
def traced_card(simulated_card: RunningCard) -> RunningCard:
    """The card restarted with APDU traces (PIN bytes masked) in its log."""
    simulated_card.restart_traced()
    return simulated_card


def _wait_for_command(card: RunningCard, before: int, header: str, what: str) -> None:
    """Until the card has taken the command `header` (INS P1 P2) after its `before` first."""
    wait_until(lambda: header in card.commands()[before:], what)


def test_fifty_concurrent_signatures_never_interleave(traced_card: RunningCard) -> None:
    async def scenario(registry: TokenRegistry) -> None:
        token_id = _only_token(registry)
        spki = await registry.call(token_id, lambda t: t.generate_key("9C", KeyType.EC_P256))
        await registry.call(token_id, lambda t: t.credentials())  # read once, then cached
        # The card logs each command before answering it: the trace is complete here.
        before = len(traced_card.commands())

        def sign(token: Token) -> bytes:
            return token.sign_digest("9C", DIGEST, ECDSA_SHA256, pin=PIN)

        signatures = await asyncio.gather(*(registry.call(token_id, sign) for _ in range(50)))
        for signature in signatures:
            _verify(spki, signature)
        trace = traced_card.commands()[before:]
        # Each signature is VERIFY, GENERAL AUTHENTICATE 9C, VERIFY P1=FF; nothing between.
        assert trace == ["200080", "87119c", "20ff80"] * 50

    run(scenario)


def test_removal_during_a_signature_gives_token_removed(traced_card: RunningCard) -> None:
    async def scenario(registry: TokenRegistry) -> None:
        token_id = _only_token(registry)
        await registry.call(token_id, lambda t: t.generate_key("9C", KeyType.EC_P256))
        await registry.call(token_id, lambda t: t.credentials())
        traced_card.control("latency 1000")  # the signature's command stays in flight
        before = len(traced_card.commands())
        signing = asyncio.create_task(registry.call(
            token_id, lambda t: t.sign_digest("9C", DIGEST, ECDSA_SHA256, pin=PIN)))
        # Pulled once the PIN is on the card, before the signature is answered.
        await asyncio.to_thread(_wait_for_command, traced_card, before, VERIFY_PIN,
                                "the signature's VERIFY on the card")
        traced_card.control("remove")
        with pytest.raises(TokenRemoved):
            await signing
        trace = traced_card.commands()[before:]
        assert trace.count("200080") == 1, "the PIN was sent again"

    run(scenario)


def test_removal_during_key_generation_gives_token_removed(traced_card: RunningCard
                                                          ) -> None:
    """The link answers the cut APDU with nothing: the card is gone, so TokenRemoved
    (not a communication error), and a retry after re-insertion makes the key."""
    async def scenario(registry: TokenRegistry) -> None:
        token_id = _only_token(registry)
        traced_card.control("latency 1000")  # the key's next command stays in flight
        before = len(traced_card.commands())
        making = asyncio.create_task(registry.call(
            token_id, lambda t: key_material(t, "9C", KeyType.EC_P256, PIN)))
        # Pulled once the PIN is on the card, before the key generation is answered.
        await asyncio.to_thread(_wait_for_command, traced_card, before, VERIFY_PIN,
                                "the key generation's VERIFY on the card")
        traced_card.control("remove")
        with pytest.raises(TokenRemoved):
            await making
        # The old entry is listed until the registry sees the reader empty: wait for that.
        await wait_until_async(lambda: not registry.tokens(), "the registry to drop the card")
        traced_card.control("latency 0")
        traced_card.control("insert")
        await wait_until_async(registry.tokens, "the card back in the registry")
        material = await registry.call(_only_token(registry), lambda t: key_material(
            t, "9C", KeyType.EC_P256, PIN))
        assert material.csr and material.attestation

    run(scenario)


def test_card_reset_by_another_application_loses_the_pin(simulated_card: RunningCard) -> None:
    async def scenario(registry: TokenRegistry) -> None:
        token_id = _only_token(registry)
        spki = await registry.call(token_id, lambda t: t.generate_key("9A", KeyType.EC_P256))
        await registry.call(token_id, lambda t: t.verify_pin(PIN))

        def other_application_resets() -> None:
            connection = connect(simulated_card.reader)
            piv.expect_ok(PyscardConnection(connection), piv.select())
            connection.disconnect()
            connection.connect(disposition=SCARD_RESET_CARD)
            connection.disconnect()

        await asyncio.to_thread(other_application_resets)
        # No verified PIN survives an operation (SECURITY #36), a reset changes nothing.
        with pytest.raises(NotAuthenticated):
            await registry.call(token_id, lambda t: t.sign_digest("9A", DIGEST, ECDSA_SHA256))
        # Asked again, the person's PIN works: nothing was blocked or burnt.
        _verify(spki, await registry.call(
            token_id, lambda t: t.sign_digest("9A", DIGEST, ECDSA_SHA256, pin=PIN)))
        status = await registry.call(token_id, lambda t: t.pin_status())
        assert status.retries_left == 3

    run(scenario)


def test_tokens_list_json_through_both_routes(simulated_card: RunningCard) -> None:
    """OpenSC's module sees the same card: listed once, with both routes."""
    out = subprocess.run([sys.executable, "-m", "qsign", "tokens", "list", "--json", "--module",
                          "/usr/lib/x86_64-linux-gnu/pkcs11/opensc-pkcs11.so"],
                         capture_output=True, text=True, timeout=120, check=True)
    tokens = json.loads(out.stdout)
    assert len(tokens) == 1, tokens
    token = tokens[0]
    assert token["serial"] == str(simulated_card.control("status")["serial"])
    assert sorted(r["kind"] for r in token["routes"]) == ["piv-pcsc", "pkcs11"]
    assert token["pin_retries"] == 3
    assert token["credentials"] == []
    for key in ("id", "label", "serial", "routes", "pin_retries", "credentials"):
        assert key in token


def test_tokens_watch_prints_events(simulated_card: RunningCard, tmp_path: Path) -> None:
    out = tmp_path / "watch.out"
    with out.open("w") as sink:
        watcher = subprocess.Popen([sys.executable, "-m", "qsign", "tokens", "watch", "--module",
                                    "/nonexistent.so"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_for_lines(out, 1)
        simulated_card.remove()
        simulated_card.insert()
        lines = _wait_for_lines(out, 3)
    finally:
        watcher.terminate()
        watcher.wait(10)
    events = [json.loads(line)["event"] for line in lines[:3]]
    assert events == ["present", "removed", "inserted"]


def _wait_for_lines(path: Path, n: int) -> list[str]:
    def lines() -> list[str]:
        found = [ln for ln in path.read_text().splitlines() if ln.startswith("{")]
        return found if len(found) >= n else []

    try:
        return wait_until(lines, f"{n} events printed by qsign tokens watch")
    except StateNotReached as exc:
        raise AssertionError(f"{exc}\n{path.read_text()}") from exc

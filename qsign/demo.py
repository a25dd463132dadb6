"""`qsign demo`: the whole stack on the embedded defaults, for a person to sign in a
browser: pcscd with the vpcd reader and a simulated card, the CA, the agent, the portal
(SQLite) and an SMTP sink that keeps every mail in a Maildir. It prints the portal's
address and a ready invitation link.

The card gets its qualified certificate at start-up through the real enrolment path
(key made on the card, attestation, CSR signed on the card, identity evidence from the
reference identity service's key, the CA's /v1/enrol), until the first-time signer's
journey does it in the page. Everything lives in one directory; a second start reuses
it (the card, the CA, the portal's transactions); `--fresh-card` replaces the card with a
factory-fresh one (the old card's state is kept aside). The demo stops what it started,
pcscd included, on Ctrl-C or SIGTERM; a pcscd that was already running is left alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import mailbox
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEMO_PIN = "123456"  # the simulated card's factory PIN (firmware_sim/profiles.py)
SIGNER = {"name": "Alice Martin", "email": "alice@example.test", "phone": "+33612345678",
          "lang": "en"}


class DemoError(RuntimeError):
    pass


@dataclass(frozen=True)
class Ports:
    ca: int
    agent: int
    portal: int
    smtp: int


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("demo", help="run the whole stack on the simulated card")
    p.add_argument("--dir", type=Path, default=Path("run"), help="where all state lives")
    p.add_argument("--ca-port", type=int, default=8790)
    p.add_argument("--agent-port", type=int, default=35741)
    p.add_argument("--portal-port", type=int, default=8780)
    p.add_argument("--smtp-port", type=int, default=8025)
    p.add_argument("--fresh-card", action="store_true",
                   help="a factory-fresh card (an existing one is set aside as "
                        "card-replaced-<time>.json): the signer enrols in the page "
                        "(identity verification, PIN, certificate) before signing")
    p.add_argument("--no-wait", action="store_true",
                   help="set everything up, print the links, stop (for scripts)")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # Ctrl-C while starting: what started is stopped already
        print("demo: interrupted, stopped", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    root: Path = args.dir.resolve()
    root.mkdir(parents=True, exist_ok=True)
    ports = Ports(args.ca_port, args.agent_port, args.portal_port, args.smtp_port)
    os.environ.setdefault("QSIGN_SIM_MANUFACTURER", str(root / "manufacturer"))
    with ExitStack() as stack:
        children: list[subprocess.Popen[bytes]] = []
        stack.callback(_stop, children)
        pcscd = _pcscd(root / "pcscd.log")
        if pcscd is not None:
            children.append(pcscd)  # first in, last stopped: after the card leaves it
        card_state = root / "card.json"
        if args.fresh_card and card_state.exists():
            aside = _set_card_aside(card_state)
            print(f"demo: --fresh-card: the previous card is set aside in {aside}",
                  flush=True)
        if not card_state.exists():
            _qsign("card", "init", "--state", str(card_state))
        children.append(_spawn(root / "card.log", "card", "run", "--state", str(card_state),
                               "--control", str(root / "card.sock")))
        ca_dir = root / "ca"
        identity = _ca(ca_dir, ports)
        children.append(_spawn(root / "ca.log", "ca", "serve", "--dir", str(ca_dir),
                               "--port", str(ports.ca)))
        _wait_http(f"http://127.0.0.1:{ports.ca}/health", "the CA")
        certificate = ("none yet: the signer enrols in the page" if args.fresh_card
                       else asyncio.run(_enrol_card(ca_dir, ports, identity)))
        smtp = _smtp_sink(root / "mail", ports.smtp)
        stack.callback(smtp.stop)
        _validation(root, ca_dir)
        portal_config = _portal_config(root, ports)
        children.append(_spawn(root / "portal.log", "portal", "serve", "--config",
                               str(portal_config)))
        _wait_http(f"http://127.0.0.1:{ports.portal}/health", "the portal")
        agent_config = _agent_config(root, ports)
        children.append(_spawn(root / "agent.log", "agent", "run", "--config",
                               str(agent_config)))
        _wait_http(f"http://127.0.0.1:{ports.agent}/v1/health", "the agent")
        invite = _demo_transaction(root, ports)
        print(f"""
qsign demo is running (state in {root}):
  portal      http://127.0.0.1:{ports.portal}/            (requester page: /requester,
              requester token: {root / 'portal' / 'requester.token'})
  sign now    {invite}
  card        Virtual PCD reader, PIN {DEMO_PIN}; certificate: {certificate}
  ID document qsign portal specimen --type td1 --country FRA --surname Martin --given Alice
                --portrait YOUR_PHOTO.jpg --out front.png back.png   (a SPECIMEN the
                demo's identity service accepts; its video check wants that photo's face)
  SMS codes   qsign portal outbox --config {portal_config}
              or http://127.0.0.1:{ports.portal}/outbox with the requester token:
              cat {root / 'portal' / 'requester.token'}
  e-mails     SMTP 127.0.0.1:{ports.smtp} -> Maildir {root / 'mail'}
  validate    http://127.0.0.1:{ports.portal}/validate      (any signed PDF; demo trusted list)
  agent       ws://127.0.0.1:{ports.agent}/v1/ws   CA http://127.0.0.1:{ports.ca}/
  logs        {root}/*.log
""", flush=True)
        if args.no_wait:
            return 0
        _wait_for_signal(children)
    return 0


# Parts --------------------------------------------------------------------------------

def _qsign(*argv: str) -> None:
    result = subprocess.run([sys.executable, "-m", "qsign", *argv], capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise DemoError(f"qsign {' '.join(argv)} failed: {result.stderr.strip()}")


def _spawn(log: Path, *argv: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "qsign", "-v", *argv], stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def _stop(children: list[subprocess.Popen[bytes]]) -> None:
    for child in reversed(children):
        if child.poll() is None:
            child.terminate()
    for child in reversed(children):
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


def _pcscd(log: Path) -> subprocess.Popen[bytes] | None:
    """A pcscd for the vpcd reader: None when one already listens (left alone), else
    ours, in the foreground as a child, so the demo stops it when it stops."""
    socket_path = Path(os.environ.get("PCSCLITE_CSOCK_NAME", "/run/pcscd/pcscd.comm"))
    if socket_path.exists():
        return None
    binary = shutil.which("pcscd") or "/usr/sbin/pcscd"
    if not Path(binary).exists():
        raise DemoError("pcscd is not installed (run 'make setup')")
    with log.open("ab") as out:
        child = subprocess.Popen([binary, "--foreground"], stdout=out,
                                 stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(100):
        if socket_path.exists():
            return child
        if child.poll() is not None:
            raise DemoError(f"pcscd exited ({child.returncode}); see {log}")
        time.sleep(0.1)
    _stop([child])
    raise DemoError(f"pcscd did not start; see {log}")


def _set_card_aside(card_state: Path) -> Path:
    """The simulated card's state file moved aside, so that a factory-fresh card is made
    in its place (its key, certificate, PIN and counters stay with the old file)."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    aside = card_state.with_name(f"card-replaced-{stamp}.json")
    card_state.rename(aside)
    return aside


def _wait_http(url: str, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):  # noqa: S310 - loopback
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise DemoError(f"{what} did not start ({url}); see its log")


def _ca(ca_dir: Path, ports: Ports) -> Any:
    """The CA, trusting the simulator's manufacturer and the identity service's key."""
    from cryptography.hazmat.primitives.serialization import Encoding

    from ca.authority import Authority, CaConfig
    from firmware_sim.attestation import Manufacturer
    from portal.identity.evidence import EvidenceSigner

    # The portal's reference identity service signs the evidence (its key lives in the
    # portal's state); the demo's own first enrolment uses the same key.
    identity = EvidenceSigner.open(ca_dir.parent / "portal" / "identity")
    if not (ca_dir / "ca.toml").exists():
        authority = Authority.init(ca_dir, CaConfig(base_url=f"http://127.0.0.1:{ports.ca}"))
        authority.trust_manufacturer(
            Manufacturer.open().root_certificate.public_bytes(Encoding.PEM))
    authority = Authority.load(ca_dir)
    if identity.certificate.public_bytes(Encoding.DER) not in {
            c.dump() for c in authority.identity_certificates}:
        authority.trust_identity_service(identity.certificate_pem)
    return identity


async def _enrol_card(ca_dir: Path, ports: Ports, identity: Any) -> str:
    """The card's slot 9C gets a qualified certificate, once."""
    import aiohttp
    from asn1crypto import x509

    from agent.identity.enrolment import key_material, needs_certificate, submit
    from agent.tokens.model import KeyType
    from agent.tokens.pcsc import PcscConnection, PcscContext
    from agent.tokens.piv import PivToken
    from ca.authority import read_certificate
    from portal.identity.evidence import Subject

    issuing = read_certificate(ca_dir / "certs" / "issuing.pem").dump()
    context = PcscContext()
    deadline = time.monotonic() + 30
    token = None
    while token is None:
        try:
            reader = next(r for r in context.readers() if "Virtual PCD" in r)
            token = PivToken(PcscConnection(context, reader), reader=reader)
        except Exception:
            if time.monotonic() > deadline:
                raise DemoError("the simulated card did not appear in the reader") from None
            await asyncio.sleep(0.2)
    try:
        if needs_certificate(token, "9C", issuing):
            material = key_material(token, "9C", KeyType.EC_P256, DEMO_PIN)
            given, surname = SIGNER["name"].split(" ", 1)
            evidence = identity.issue(
                Subject(given, surname, "FR", "IDCFR-DEMO0001"), material.spki,
                now=dt.datetime.now(dt.UTC), lifetime=dt.timedelta(minutes=10))
            async with aiohttp.ClientSession() as session:
                enrolled = await submit(session, f"http://127.0.0.1:{ports.ca}", material,
                                        evidence.token)
            token.put_certificate("9C", enrolled.certificate)
        credential = next(c for c in token.credentials() if c.id == "9C")
        assert credential.certificate is not None
        return str(x509.Certificate.load(credential.certificate).subject.human_friendly)
    finally:
        token.close()


class _MaildirSink:
    """An SMTP server on loopback that keeps every message in a Maildir (aiosmtpd)."""

    def __init__(self, directory: Path, port: int) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.handlers import Mailbox

        self.controller = Controller(Mailbox(directory), hostname="127.0.0.1",
                                     port=port)
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def _smtp_sink(directory: Path, port: int) -> _MaildirSink:
    mailbox.Maildir(str(directory), create=True)
    return _MaildirSink(directory, port)


def _agent_credential(root: Path) -> tuple[Path, str]:
    """The agent's credential at the portal's SMS OTP routes: its file (kept across
    runs) and the digest the portal lists."""
    from ground.files import write_atomically
    from portal.agent_auth import new_agent_token, token_digest

    path = root / "agent-portal.token"
    if not path.exists():
        token, _ = new_agent_token()
        write_atomically(path, token.encode() + b"\n")
    return path, token_digest(path.read_text())


def _portal_config(root: Path, ports: Ports) -> Path:
    path = root / "portal.toml"
    roots = root / "ca" / "certs" / "root.pem"
    _, digest = _agent_credential(root)
    path.write_text(
        "[portal]\n"
        f"state_dir = {json.dumps(str(root / 'portal'))}\n"
        f"port = {ports.portal}\n"
        f"agent_port = {ports.agent}\n"
        f"trust_roots = [{json.dumps(str(roots))}]\n"
        f"intermediates = [{json.dumps(str(root / 'ca' / 'certs' / 'issuing.pem'))}]\n"
        f'timestamp_url = "http://127.0.0.1:{ports.ca}/tsa"\n'
        f'smtp_host = "127.0.0.1"\nsmtp_port = {ports.smtp}\n'
        "identity_accept_specimens = true\n"
        f'agent_token_sha256 = ["{digest}"]\n'
        "[validation]\n"  # the CA's demo trusted list: the demo's signatures show QES
        f"trusted_lists = [{json.dumps(str(root / 'trusted-list.xml'))}]\n"
        f"operator_certs = [{json.dumps(str(root / 'trusted-list-operator.pem'))}]\n")
    return path


def _validation(root: Path, ca_dir: Path) -> None:
    """The CA's trusted list (issued afresh at each start) with its scheme operator's
    certificate, and the portal's seal for validation reports, certified by the CA."""
    from qsign.validation_setup import demo_trusted_list, seal_from_ca

    demo_trusted_list(ca_dir, root)
    seal_from_ca(ca_dir, None, root / "portal")


def _agent_config(root: Path, ports: Ports) -> Path:
    path = root / "agent.toml"
    token_file, _ = _agent_credential(root)
    path.write_text(
        "[agent]\n"
        f"state_dir = {json.dumps(str(root / 'agent-state'))}\n"
        f"port = {ports.agent}\n"
        f'allowed_origins = ["http://127.0.0.1:{ports.portal}", '
        f'"http://localhost:{ports.portal}"]\n'
        f'timestamp_url = "http://127.0.0.1:{ports.ca}/tsa"\n'
        f'portal_url = "http://127.0.0.1:{ports.portal}"\n'
        f"portal_token_file = {json.dumps(str(token_file))}\n"
        f'ca_url = "http://127.0.0.1:{ports.ca}"\n')
    return path


def _demo_transaction(root: Path, ports: Ports) -> str:
    """An open transaction for the demo signer (a new one when the last was closed)."""
    from portal.samples import text_pdf

    base = f"http://127.0.0.1:{ports.portal}"
    token = (root / "portal" / "requester.token").read_text().strip()

    def call(method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(  # noqa: S310 - loopback
            base + path, method=method, headers={"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/json"},
            data=None if body is None else json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return json.loads(response.read())

    for tx in call("GET", "/api/v1/transactions")["transactions"]:
        if tx["status"] == "open" and tx["signers"][0]["inviteUrl"]:
            return str(tx["signers"][0]["inviteUrl"])
    documents = [
        ("lease-agreement.pdf", text_pdf("Lease agreement", [
            "Between Agence Dupont, the landlord, and Alice Martin, the tenant.",
            "The landlord lets the flat at 12 rue des Lilas, 75011 Paris, for three years "
            "from 1 January 2027. The rent is 900 EUR a month, payable in advance.",
            "Signed with a qualified electronic signature (eIDAS, QCP-n-qscd)."], pages=2)),
        ("inventory.pdf", text_pdf("Inventory of fixtures", [
            "Kitchen: oven, hob, fridge, all in working order.",
            "Living room: two radiators, parquet floor in good condition."])),
    ]
    tx = call("POST", "/api/v1/transactions", {
        "title": "Lease for 12 rue des Lilas",
        "requester": {"name": "Agence Dupont", "email": "agence@example.test"},
        "documents": [{"name": name, "content": base64.b64encode(data).decode()}
                      for name, data in documents],
        "signers": [SIGNER], "level": "B-LT"})
    return str(tx["signers"][0]["inviteUrl"])


def _wait_for_signal(children: list[subprocess.Popen[bytes]]) -> None:
    stop = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    while not stop:
        for child in children:
            if child.poll() is not None:
                print(f"demo: {child.args!r} stopped "
                      f"(exit {child.returncode}); stopping", file=sys.stderr)
                return
        time.sleep(0.5)

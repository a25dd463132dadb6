"""Localhost TLS (SECURITY #13): the agent serves plain HTTP on loopback and never TLS,
so there is no certificate and private key to ship to every user (a key every install
shares is everyone's key; browsers allow ws://127.0.0.1 from https pages, and pairing
is the agent's trust). A real `qsign agent run`: a TLS ClientHello to its port gets no
TLS answer on 127.0.0.1 or ::1, while HTTP on the same port does; and its
configuration has no key for a certificate or a private key."""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
from pathlib import Path

import pytest

from tests.support.agent_daemon import (
    QSIGN,
    AgentProcess,
    http_get,
    isolated_env,
    running,
    write_toml,
)

TLS_RECORD_TYPES = range(0x14, 0x18)  # change_cipher_spec, alert, handshake, data


def _client_hello(server_hostname: str | None) -> tuple[ssl.SSLObject, ssl.MemoryBIO, bytes]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_hostname)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    assert hello[0] == 0x16, "not a TLS handshake record"
    return tls, incoming, hello


def _exchange(address: str, port: int, data: bytes) -> bytes:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family) as sock:
        sock.settimeout(30)
        sock.connect((address, port))
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


@pytest.mark.parametrize("server_hostname", [None, "localhost"])
def test_a_tls_client_hello_gets_no_tls_answer(tmp_path: Path,
                                               server_hostname: str | None) -> None:
    with running(AgentProcess(tmp_path, pcsc=False)) as agent:
        for address in ("127.0.0.1", "::1"):
            assert http_get(agent.port, "/v1/health", address)[0] == 200  # plain HTTP
            tls, incoming, hello = _client_hello(server_hostname)
            answer = _exchange(address, agent.port, hello)
            assert answer[:1] == b"" or answer[0] not in TLS_RECORD_TYPES, answer[:40]
            assert answer == b"" or re.match(rb"HTTP/1\.[01] 4\d\d ", answer), answer[:40]
            incoming.write(answer)
            incoming.write_eof()
            with pytest.raises(ssl.SSLError) as refused:
                tls.do_handshake()
            assert not isinstance(refused.value, ssl.SSLWantReadError)
            assert http_get(agent.port, "/v1/health", address)[0] == 200  # still serving


@pytest.mark.parametrize("key", ["tls", "tls_certificate", "tls_key", "certfile", "keyfile",
                                 "ssl_certificate", "ssl_key", "https"])
def test_the_configuration_takes_no_certificate_or_key(tmp_path: Path, key: str) -> None:
    config = write_toml(tmp_path / "agent.toml", {"port": 1, key: "/etc/qsign/agent.pem"})
    result = subprocess.run([*QSIGN, "agent", "config", "--config", str(config)],
                            env=isolated_env(tmp_path / "home"), capture_output=True,
                            text=True, check=False)
    assert result.returncode == 2 and f"agent.{key}" in result.stderr, result.stderr

"""The Debian package, built by packaging/build-deb.sh, through an install / upgrade /
remove / purge cycle in a throwaway root (dpkg --root, maintainer scripts run
chrootless with DPKG_ROOT): the installed agent serves, an upgrade keeps its state
and the administrator's policy, and removal leaves nothing listening."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import subprocess
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ground import __version__
from tests.support.agent_daemon import (
    REPO,
    free_port,
    isolated_env,
    listening,
    stop,
    wait_health,
    write_toml,
)
from tests.support.key_material import KeyMaterial, loopback_names, scan_file, scan_tree

PORTAL = "https://portal.example.test"
V1, V2 = f"{__version__}+t1", f"{__version__}+t2"


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two builds of the working tree (versions +t1 and +t2) and the wheel."""
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb is missing", pytrace=False)
    out = tmp_path_factory.mktemp("dist")
    built: dict[str, Path] = {}
    for version in (V1, V2):
        result = subprocess.run(["bash", str(REPO / "packaging" / "build-deb.sh"),
                                 "--version", version, "--out", str(out)],
                                capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.fail(f"build-deb.sh failed:\n{result.stdout}\n{result.stderr}",
                        pytrace=False)
        built[version] = Path(result.stdout.strip().splitlines()[-1])
    wheels = list(out.glob("qsign-*.whl"))
    assert len(wheels) == 1
    built["wheel"] = wheels[0]
    return built


class Root:
    """A throwaway root with an empty dpkg database."""

    def __init__(self, path: Path) -> None:
        self.path = path
        admin = path / "var" / "lib" / "dpkg"
        for sub in ("info", "updates", "triggers"):
            (admin / sub).mkdir(parents=True)
        (admin / "status").touch()
        (admin / "available").touch()

    def dpkg(self, *args: str) -> subprocess.CompletedProcess[str]:
        # python3 and libpcsclite1 are the host's: this root's database does not know them.
        result = subprocess.run(
            ["dpkg", f"--root={self.path}", "--force-script-chrootless", "--force-depends",
             "--log=/dev/null", *args], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        return result

    def status(self) -> str:
        result = subprocess.run(["dpkg-query", f"--root={self.path}", "-W", "-f",
                                 "${Status} ${Version}", "qsign"],
                                capture_output=True, text=True, check=False)
        return result.stdout.strip() if result.returncode == 0 else "absent"

    def files(self) -> list[str]:
        """Everything in the root but dpkg's own database."""
        found = []
        for dirpath, dirnames, filenames in os.walk(self.path):
            rel = Path(dirpath).relative_to(self.path)
            if rel == Path("var/lib/dpkg"):
                dirnames.clear()
                continue
            found += [str(rel / name) for name in filenames]
            found += [str(rel / name) for name in dirnames
                      if (Path(dirpath) / name).is_symlink()]
        return sorted(found)


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Root]:
    yield Root(tmp_path / "root")


def _run_installed(root: Root, home: Path) -> subprocess.Popen[str]:
    """The installed launcher, as the service would start it, under the root's policy."""
    env = isolated_env(home, root.path / "etc" / "qsign" / "agent.toml")
    env.pop("PYTHONPATH")  # the package's own tree, nothing from the repository
    return subprocess.Popen([str(root.path / "usr" / "bin" / "qsign"), "agent", "run"],
                            env=env, cwd=home, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)


def _installed_cli(root: Root, home: Path, *args: str) -> str:
    env = isolated_env(home, root.path / "etc" / "qsign" / "agent.toml")
    env.pop("PYTHONPATH")
    result = subprocess.run([str(root.path / "usr" / "bin" / "qsign"), *args], env=env,
                            cwd=home, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _pair(port: int) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/pair", method="POST",
        data=json.dumps({"jsonrpc": "2.0", "method": "pair/request", "id": 1}).encode(),
        headers={"Origin": "https://other.example.test", "Content-Type": "application/json",
                 "Host": f"127.0.0.1:{port}"})
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 (loopback)
        code: str = json.load(response)["result"]["code"].replace("-", "")
    return code


def test_the_wheel_holds_the_agent_and_its_web_client(packages: dict[str, Path]) -> None:
    listing = subprocess.run(["python3", "-m", "zipfile", "-l", str(packages["wheel"])],
                             capture_output=True, text=True, check=True).stdout
    for member in ("agent/app.py", "agent/discovery.py", "agent/metrics.py",
                   "agent/web/qsign.js", "qsign/cli.py"):
        assert member in listing


def test_install_upgrade_remove_purge_in_a_throwaway_root(
        packages: dict[str, Path], root: Root, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    root.dpkg("-i", str(packages[V1]))
    assert root.status() == f"install ok installed {V1}"
    r = root.path
    for path in ("usr/bin/qsign", "usr/lib/systemd/system/qsign-agent.service",
                 "usr/lib/systemd/system/qsign-agent.socket",
                 "usr/lib/systemd/user/qsign-agent.service",
                 "usr/lib/systemd/user/qsign-agent.socket", "etc/qsign/agent.toml",
                 "usr/share/qsign/chromium-policy.json"):
        assert (r / path).is_file(), path
    assert (r / "etc/qsign/agent.toml").read_text() == \
        (REPO / "packaging" / "agent.toml").read_text()
    # the per-user socket is enabled for every user; the system one is not
    wants = r / "etc/systemd/user/sockets.target.wants/qsign-agent.socket"
    assert os.readlink(wants) == "/usr/lib/systemd/user/qsign-agent.socket"
    assert not (r / "etc/systemd/system/sockets.target.wants").exists()
    assert _installed_cli(root, home, "--version").strip() == f"qsign {__version__}"

    # The administrator edits the policy (a conffile): a port, the state, an origin.
    port = free_port()
    state = r / "var" / "lib" / "qsign-agent"
    write_toml(r / "etc/qsign/agent.toml", {
        "port": port, "state_dir": str(state), "pcsc": False, "pkcs11_modules": [],
        "allowed_origins": [PORTAL]}, locked=["allowed_origins"])
    policy_text = (r / "etc/qsign/agent.toml").read_text()
    agent = _run_installed(root, home)
    try:
        first = wait_health(port, agent)
        code = _pair(port)
        assert _installed_cli(root, home, "agent", "approve", code).startswith("paired")
    finally:
        if agent.poll() is not None:
            print(stop(agent))

    # Upgrade: the running agent is stopped (no outdated agent keeps serving), the
    # administrator's policy and the agent's state are kept.
    root.dpkg("--force-confold", "-i", str(packages[V2]))
    assert root.status() == f"install ok installed {V2}"
    assert agent.wait(timeout=60) is not None
    assert listening(port) == []
    assert (r / "etc/qsign/agent.toml").read_text() == policy_text
    agent = _run_installed(root, home)
    try:
        again = wait_health(port, agent)
        assert again["id"] == first["id"]
        origins = _installed_cli(root, home, "agent", "origins")
        assert "https://other.example.test  (paired" in origins
        assert f"{PORTAL}  (configuration)" in origins
        effective = _installed_cli(root, home, "agent", "config", "--effective")
        assert "policy (locked)" in effective
    finally:
        if agent.poll() is not None:
            print(stop(agent))

    # Remove: nothing listening, the program gone; the policy and the state stay.
    root.dpkg("-r", "qsign")
    assert agent.wait(timeout=60) is not None, "the agent survived its package"
    assert listening(port) == []
    assert not (r / "usr/bin/qsign").exists() and not (r / "usr/lib/qsign").exists()
    assert (r / "etc/qsign/agent.toml").read_text() == policy_text
    assert (state / "agent-id").read_text().strip() == first["id"]

    # Purge: nothing of qsign is left in the root.
    root.dpkg("-P", "qsign")
    assert root.status() == "absent"
    assert root.files() == []
    leftovers = [str(p) for p in r.rglob("*qsign*")]
    assert leftovers == []
    stop(agent)


OWN_PACKAGES = ("agent", "ca", "portal", "ground", "qsign", "firmware_sim")


def _own(path: str) -> bool:
    """qsign's own files in the package: all but the bundled libraries."""
    parts = path.split("/")
    if parts[:3] != ["usr", "lib", "qsign"]:
        return True
    top = parts[4] if len(parts) > 4 and parts[3] == "python" else ""
    return top in OWN_PACKAGES or top.startswith("qsign-")


def test_no_private_key_or_localhost_certificate_ships(
        packages: dict[str, Path], tmp_path: Path) -> None:
    """SECURITY #13: never a shared private key. The wheel and qsign's own files hold no
    key or certificate at all; the bundled libraries no private key or key container
    (their test corpora's keys are removed), and no certificate for a loopback host."""
    wheel = KeyMaterial()
    with zipfile.ZipFile(packages["wheel"]) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        for member in members:
            scan_file(member.filename, archive.read(member), wheel)
    assert any(m.filename == "agent/app.py" for m in members)
    assert (wheel.private_keys, wheel.containers, wheel.certificate_files,
            wheel.pem_blocks) == ([], [], [], [])

    tree = tmp_path / "deb"
    subprocess.run(["dpkg-deb", "-x", str(packages[V1]), str(tree)], check=True)
    everything = scan_tree(tree, skip_test_corpora=False)
    own = [f for f in everything.pem_blocks + everything.containers if _own(f.path)]
    own_files = [p for p in everything.certificate_files if _own(p)]
    assert (own, own_files) == ([], [])
    # Not even the bundled libraries' test keys (build-deb.sh removes them).
    assert everything.private_keys == [] and everything.containers == []
    outside_tests = scan_tree(tree, skip_test_corpora=True)
    # Not vacuous: the scan reads the bundled trust stores (certifi's CA bundle).
    assert len([p for p, _ in outside_tests.certificates if "certifi" in p]) > 100
    localhost = [(p, loopback_names(c)) for p, c in everything.certificates
                 if loopback_names(c)]
    assert localhost == []


def test_the_key_scan_finds_keys_and_localhost_certificates(tmp_path: Path) -> None:
    """The scanner itself, on a tree holding what a localhost-TLS agent would ship."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "qsign agent")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]),
                           critical=False).sign(key, hashes.SHA256()))
    pem_key = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    (tmp_path / "agent" / "web").mkdir(parents=True)
    (tmp_path / "agent" / "tls.py").write_bytes(
        b'KEY = """' + pem_key + b'"""\n')
    (tmp_path / "agent" / "web" / "localhost.der").write_bytes(
        cert.public_bytes(serialization.Encoding.DER))
    (tmp_path / "agent" / "web" / "localhost.p12").write_bytes(b"\x30\x82")
    found = scan_tree(tmp_path, skip_test_corpora=True)
    assert [f.what for f in found.private_keys] == ["EC PRIVATE KEY"]
    assert [f.path for f in found.containers] == ["agent/web/localhost.p12"]
    assert [loopback_names(c) for _, c in found.certificates] == [["localhost"]]

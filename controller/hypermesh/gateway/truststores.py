"""Installing the gateway's root into the trust stores browsers read, and taking it out again.

- NSS databases (Chromium's ``~/.pki/nssdb``, made when missing, and each Firefox profile that
  has a ``cert9.db``), through ``certutil`` from Debian's ``libnss3-tools``;
- with ``--system`` (as root): ``/usr/local/share/ca-certificates`` and
  ``update-ca-certificates``, which curl, Python and most of the system read.

Each place is recorded (``AuthorityFiles.record_places``) so that removal touches exactly the
places installation did. The nickname carries the root's fingerprint, so another CA in the same
database is never touched.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hypermesh.gateway.authority import AuthorityError

SYSTEM_DIRECTORY = Path("/usr/local/share/ca-certificates")
CERTUTIL_TIMEOUT = 30.0


def nickname(fingerprint: str) -> str:
    """The name the root has in NSS databases: ``HyperMesh gateway CA ABCDEF012345`` (no
    colon: NSS reads ``TOKEN:NAME``)."""
    return f"HyperMesh gateway CA {fingerprint.replace(':', '')[:12]}"


def nss_databases(home: Path) -> list[Path]:
    """Chromium's database (whether it exists yet or not) and every Firefox profile's."""
    found = [home / ".pki" / "nssdb"]
    for root in (home / ".mozilla" / "firefox", home / "snap/firefox/common/.mozilla/firefox"):
        if root.is_dir():
            found.extend(sorted(p.parent for p in root.glob("*/cert9.db")))
    return found


@dataclass(frozen=True, slots=True)
class Certutil:
    """``certutil`` on NSS databases in the SQL format."""

    program: str

    @classmethod
    def find(cls) -> Certutil:
        program = shutil.which("certutil")
        if program is None:
            raise AuthorityError(
                "certutil is missing: install it (Debian: apt-get install libnss3-tools)"
            )
        return cls(program)

    def _run(self, database: Path, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [self.program, "-d", f"sql:{database}", *args],
                capture_output=True,
                text=True,
                timeout=CERTUTIL_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AuthorityError(f"certutil on {database}: {exc}") from None

    def ensure_database(self, database: Path) -> None:
        """Make an empty database (no password) where there is none, as Chromium would."""
        if (database / "cert9.db").exists():
            return
        database.mkdir(parents=True, exist_ok=True, mode=0o700)
        done = self._run(database, "-N", "--empty-password")
        if done.returncode != 0:
            raise AuthorityError(f"certutil cannot make {database}: {done.stderr.strip()}")

    def holds(self, database: Path, name: str) -> bool:
        return self._run(database, "-L", "-n", name).returncode == 0

    def add(self, database: Path, name: str, pem: Path) -> None:
        """Trust ``pem`` to issue TLS server certificates (``C,,``) in ``database``."""
        done = self._run(database, "-A", "-t", "C,,", "-n", name, "-i", str(pem))
        if done.returncode != 0:
            raise AuthorityError(f"certutil cannot add the CA to {database}: {done.stderr}")

    def delete(self, database: Path, name: str) -> bool:
        """Remove every certificate called ``name``; whether there was one."""
        removed = False
        for _ in range(8):  # a database holds a nickname a few times at most
            if not self.holds(database, name):
                break
            done = self._run(database, "-D", "-n", name)
            if done.returncode != 0:
                raise AuthorityError(
                    f"certutil cannot remove the CA from {database}: {done.stderr}"
                )
            removed = True
        return removed


def install_nss(home: Path, pem: Path, fingerprint: str) -> list[dict[str, str]]:
    """Add the root to every NSS database of ``home``; the places it went."""
    certutil = Certutil.find()
    places = []
    for database in nss_databases(home):
        certutil.ensure_database(database)
        name = nickname(fingerprint)
        if not certutil.holds(database, name):
            certutil.add(database, name, pem)
        places.append({"store": "nss", "path": str(database)})
    return places


def system_file(directory: Path, user: str) -> Path:
    return directory / f"hypermesh-gateway-{user}.crt"


def install_system(pem: bytes, path: Path) -> dict[str, str]:
    """Write the root where ``update-ca-certificates`` looks, then run it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pem)
    path.chmod(0o644)
    _update_ca_certificates()
    return {"store": "system", "path": str(path)}


def remove_place(place: dict[str, str], fingerprint: str) -> str:
    """Undo one recorded installation; what was done, for the user."""
    path = Path(place["path"])
    if place["store"] == "nss":
        if not (path / "cert9.db").exists():
            return f"{path}: the database is gone"
        removed = Certutil.find().delete(path, nickname(fingerprint))
        return f"{path}: removed" if removed else f"{path}: was not there"
    if place["store"] == "system":
        if not path.exists():
            return f"{path}: was not there"
        path.unlink()
        _update_ca_certificates()
        return f"{path}: removed (update-ca-certificates)"
    return f"{path}: unknown store {place['store']!r}, left alone"


def _update_ca_certificates() -> None:
    program = shutil.which("update-ca-certificates")
    if program is None:
        raise AuthorityError("update-ca-certificates is missing (Debian: ca-certificates)")
    try:
        done = subprocess.run([program], capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AuthorityError(f"update-ca-certificates: {exc}") from None
    if done.returncode != 0:
        raise AuthorityError(f"update-ca-certificates failed: {done.stderr.strip()}")

"""Where the gateway keeps its CA: one directory per user (``$XDG_DATA_HOME/hypermesh/gateway``,
else ``~/.local/share/hypermesh/gateway``), mode 0700, holding

- ``ca.pem``: the root certificate (public; what trust stores get);
- ``ca.key``: its private key, mode 0600, never printed, never sent anywhere;
- ``installed.json``: where ``trust`` installed the root, so ``untrust`` removes it from
  exactly there;
- ``gateway.json``: the address of the gateway that runs, so ``status`` finds it.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypermesh.files import FileCheckError, read_bounded, write_atomic
from hypermesh.gateway.authority import (
    Authority,
    AuthorityError,
    create_authority,
    key_pem,
    load_authority,
)

MAX_FILE = 64 * 1024
"""None of these files is bigger; a bigger one is not ours."""


def default_directory(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/hypermesh/gateway``, else ``$HOME/.local/share/hypermesh/gateway``."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_DATA_HOME") or str(Path(env.get("HOME", "~")) / ".local" / "share")
    return Path(base).expanduser() / "hypermesh" / "gateway"


@dataclass(frozen=True, slots=True)
class AuthorityFiles:
    """The CA's directory and the files in it."""

    directory: Path

    @property
    def certificate(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def installed(self) -> Path:
        return self.directory / "installed.json"

    @property
    def running(self) -> Path:
        return self.directory / "gateway.json"

    def exists(self) -> bool:
        return self.key.exists() or self.certificate.exists()

    def load(self) -> Authority:
        """The CA, or ``AuthorityError`` saying to run ``hmctl gateway trust`` first."""
        if not self.exists():
            raise AuthorityError(f"no CA in {self.directory}: run `hmctl gateway trust` first")
        return load_authority(_read(self.certificate), _read(self.key))

    def create(self, tlds: tuple[str, ...], owner: str) -> Authority:
        """Make the CA and write it (the key first, 0600); ``AuthorityError`` when one exists."""
        if self.exists():
            raise AuthorityError(f"a CA already exists in {self.directory}")
        authority = create_authority(tlds, owner, datetime.datetime.now(datetime.UTC))
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.directory.chmod(0o700)
        write_atomic(self.key, key_pem(authority.key).decode(), mode=0o600)
        write_atomic(self.certificate, authority.pem.decode(), mode=0o644)
        return authority

    def places(self) -> list[dict[str, str]]:
        """Where the root was installed (``[{"store": "nss", "path": …}, …]``)."""
        data = self.read_json(self.installed)
        places = data.get("places") if isinstance(data, dict) else None
        if not isinstance(places, list):
            return []
        return [
            {"store": str(p["store"]), "path": str(p["path"])}
            for p in places
            if isinstance(p, dict) and "store" in p and "path" in p
        ]

    def record_places(self, places: list[dict[str, str]]) -> None:
        unique = [dict(t) for t in sorted({tuple(sorted(p.items())) for p in places})]
        write_atomic(self.installed, json.dumps({"places": unique}, indent=2) + "\n", 0o600)

    def remove(self) -> list[Path]:
        """Delete every file of the CA (the key first) and the directory if it is then empty;
        the paths deleted."""
        gone = []
        for path in (self.key, self.certificate, self.installed, self.running):
            if path.exists():
                path.unlink()
                gone.append(path)
        if self.directory.exists() and not any(self.directory.iterdir()):
            self.directory.rmdir()
        return gone

    @staticmethod
    def read_json(path: Path) -> Any:
        """The JSON in ``path``, or None when it is missing, too big or not JSON."""
        try:
            return json.loads(_read(path))
        except (AuthorityError, ValueError):
            return None


def _read(path: Path) -> bytes:
    try:
        return read_bounded(path, MAX_FILE)
    except FileCheckError as exc:
        raise AuthorityError(f"{path}: {exc}: not a CA file") from None
    except OSError as exc:
        raise AuthorityError(f"{path}: {exc.strerror}") from None

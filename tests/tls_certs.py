"""Test certificates made with the openssl command: a cluster CA and nodes it signed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> Path:
    """A self-signed CA in ``directory``: ``name``-ca.pem and its key."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={name} test CA", "-keyout", f"{name}-ca.key", "-out", f"{name}-ca.pem",
             cwd=directory)
    return directory / f"{name}-ca.pem"


def make_node(directory: Path, ca: str, name: str) -> tuple[Path, Path]:
    """A node certificate and key signed by the CA ``ca`` (made by ``make_ca``)."""
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=directory)
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}-ca.pem", "-CAkey", f"{ca}-ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{name}.pem", cwd=directory)
    return directory / f"{name}.pem", directory / f"{name}.key"

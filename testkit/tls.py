"""Throwaway TLS certificates for tests that serve over TLS (and mutual TLS)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _new_key(subject: str, key: Path, out: Path, *request: str) -> None:
    """A new RSA key at ``key`` and, for ``subject``, a certificate request at ``out`` (or,
    with ``request`` ``-x509`` and its options, a self-signed certificate valid one day)."""
    _openssl(
        "req",
        *request,
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        subject,
        "-keyout",
        str(key),
        "-out",
        str(out),
    )


def self_signed(folder: Path, name: str) -> tuple[Path, Path]:
    """Write a self-signed certificate for localhost and 127.0.0.1 (valid one day) and its key
    as ``folder/name.pem`` and ``folder/name.key``; returns ``(cert, key)``. Needs ``openssl``."""
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    extension = "subjectAltName=DNS:localhost,IP:127.0.0.1"
    _new_key("/CN=localhost", key, cert, "-x509", "-days", "1", "-addext", extension)
    return cert, key


def client_certificate(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """Write a CA (``folder/name-ca.pem``) and a client certificate it signed for ``name``
    (``folder/name.pem``, key ``folder/name.key``), each valid one day; returns
    ``(ca, cert, key)``. Needs ``openssl``."""
    ca, ca_key = folder / f"{name}-ca.pem", folder / f"{name}-ca.key"
    cert, key, csr = folder / f"{name}.pem", folder / f"{name}.key", folder / f"{name}.csr"
    _new_key(f"/CN={name}-ca", ca_key, ca, "-x509", "-days", "1")
    _new_key(f"/CN={name}", key, csr)
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "1",
        "-out",
        str(cert),
    )
    return ca, cert, key

"""A throwaway self-signed serving certificate, so the server can speak HTTPS.

Why: kubectl (client-go's clientcmd) never sends credentials over plain HTTP, so a token-protected
server is only usable by kubectl over TLS.  The certificate is made with the `openssl` CLI (no
Python crypto dependency), valid for 127.0.0.1 and localhost, and is its own CA in the kubeconfig.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServingCert:
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """For raw aiohttp clients in tests: trusts exactly this certificate."""
        return ssl.create_default_context(cafile=str(self.cert))


async def make_serving_cert(folder: Path, host: str = "127.0.0.1") -> ServingCert:
    """Create key.pem/cert.pem in the existing private (0700) `folder`, e.g. a TemporaryDirectory.

    An async subprocess, so the event loop is not blocked.
    """
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("tls=True needs the openssl CLI on PATH to make a serving certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    proc = await asyncio.create_subprocess_exec(
        openssl,
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        str(key),
        "-out",
        str(cert),
        "-days",
        "7",
        "-subj",
        "/CN=hotplug-sim-apiserver",
        "-addext",
        f"subjectAltName=IP:{host},DNS:localhost",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"openssl failed: {err.decode(errors='replace')}")
    return ServingCert(cert, key)

"""``[web] tls = true``: ``xgate serve web`` answers over HTTPS with [tls]'s certificate, so
browsers that reach it by a name other than loopback keep its Secure session cookie."""

from __future__ import annotations

import ssl
import subprocess
import time
from pathlib import Path

import httpx

from tests.support.cli import XGATE, clean_env, init_installation
from tests.support.ports import free_port


def test_the_web_app_serves_https_with_the_tls_certificate(tmp_path: Path) -> None:
    config = init_installation(tmp_path / "inst", "--demo")
    cert = tmp_path / "inst" / "tls" / "cert.pem"
    port = free_port()
    env = clean_env({"XGATE_WEB__PORT": str(port), "XGATE_WEB__TLS": "true"})
    process = subprocess.Popen([str(XGATE), "-c", str(config), "serve", "web"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # The demo certificate is self-signed for the SMTP host name, not for 127.0.0.1.
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"https://127.0.0.1:{port}/healthz", verify=context,
                                   timeout=5)
                break
            except httpx.ConnectError:
                assert process.poll() is None, "xgate serve web exited"
                assert time.monotonic() < deadline, "the web app did not answer over HTTPS"
                time.sleep(0.2)
        assert health.status_code == 200
        login = httpx.get(f"https://127.0.0.1:{port}/login", verify=context, timeout=5)
        assert login.status_code == 200 and "Anmelden" in login.text
        # Plain HTTP on the same port is not answered as a page.
        try:
            plain = httpx.get(f"http://127.0.0.1:{port}/login", timeout=5)
            assert plain.status_code != 200
        except httpx.HTTPError:
            pass
    finally:
        process.terminate()
        process.wait(20)

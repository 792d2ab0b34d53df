"""A real OpenID Connect provider for the sign-in tests: the npm package ``oidc-provider``, installed
from the npm registry into a cache folder on first use and run on Node.js (``tests/oidc/provider.mjs``).

``start_provider`` skips the calling test, with the reason, when Node.js or npm is missing or the
registry cannot be reached.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

OIDC_PROVIDER = "oidc-provider@8.8.1"  # the 8.x line supports Node.js 20 (9.x wants 22)
SCRIPT = Path(__file__).resolve().parent / "oidc" / "provider.mjs"
CLIENT_ID = "audits-dashboard"
CLIENT_SECRET = "a-client-secret-for-tests-only"


def cache_dir() -> Path:
    """Where the package is installed: ``$AUDITS_TEST_CACHE``, else ``~/.cache/audits-tests``."""
    root = Path(os.environ.get("AUDITS_TEST_CACHE") or Path.home() / ".cache" / "audits-tests")
    return root / OIDC_PROVIDER.replace("@", "-")


def install() -> Path:
    """The folder holding ``node_modules/oidc-provider`` and the provider script (installed once)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are needed to run a real OpenID Connect provider (apt-get install nodejs npm)")
    folder = cache_dir()
    if not (folder / "node_modules" / "oidc-provider" / "package.json").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(
                [npm, "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--no-save", OIDC_PROVIDER],
                capture_output=True,
                text=True,
                timeout=300,
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"npm could not install {OIDC_PROVIDER} within 300 s (is the npm registry reachable?)")
        if done.returncode != 0:
            pytest.skip(f"npm could not install {OIDC_PROVIDER} (is the npm registry reachable?): {done.stderr.strip()[-300:]}")
    shutil.copy(SCRIPT, folder / SCRIPT.name)  # beside node_modules, so the import resolves
    return folder


@contextmanager
def start_provider(*, port: int, redirect_uri: str, log_path: Path) -> Iterator[str]:
    """Run the provider on 127.0.0.1:``port`` with one client for ``redirect_uri``; yields its issuer URL."""
    folder = install()
    issuer = f"http://127.0.0.1:{port}"
    with open(log_path, "w+") as log:
        proc = subprocess.Popen(
            ["node", str(folder / SCRIPT.name), str(port), redirect_uri, CLIENT_ID, CLIENT_SECRET], cwd=folder, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{issuer}/.well-known/openid-configuration", timeout=2) as response:
                        if response.status == 200:
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"the OpenID Connect provider did not start:\n{log.read()[-2000:]}")
                time.sleep(0.2)
            yield issuer
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

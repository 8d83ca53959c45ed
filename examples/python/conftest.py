"""A pytest fixture serving unisender-local for a test session, and resetting it to the
fixture before each test. Set UNISENDER_LOCAL_BIN to the binary (cargo build --release puts it
in target/release/unisender-local)."""

import json
import os
import pathlib
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest

KEY = "pytest-key"
HERE = pathlib.Path(__file__).parent


class UnisenderLocal:
    def __init__(self, url):
        self.url = url

    def api(self, method, **params):
        form = urllib.parse.urlencode({"api_key": KEY, **params}).encode()
        with urllib.request.urlopen(f"{self.url}/en/api/{method}?format=json", form) as answer:
            return json.load(answer)

    def local(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        with urllib.request.urlopen(request) as answer:
            return json.load(answer)


@pytest.fixture(scope="session")
def unisender_server():
    binary = os.environ.get("UNISENDER_LOCAL_BIN", "unisender-local")
    with tempfile.TemporaryDirectory() as directory:
        ready = pathlib.Path(directory, "ready")
        process = subprocess.Popen(
            [binary, "serve", "--listen", "127.0.0.1:0", "--quiet",
             "--db", str(pathlib.Path(directory, "test.db")),
             "--account", f"shop:{KEY}",
             "--seed", f"{HERE / 'fixture.csv'}:Customers",
             "--ready-file", str(ready)],
            stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not ready.exists():
                assert process.poll() is None, "the server exited"
                assert time.monotonic() < deadline, "the server did not get ready"
                time.sleep(0.02)
            server = UnisenderLocal(ready.read_text().strip())
            server.local("POST", "/_local/snapshots/fixture")
            yield server
        finally:
            process.terminate()
            process.wait(timeout=30)


@pytest.fixture
def unisender(unisender_server):
    """The fixture's state, and an empty journal, for every test."""
    unisender_server.local("POST", "/_local/snapshots/fixture/restore")
    unisender_server.local("DELETE", "/_local/requests")
    yield unisender_server
    unisender_server.local("DELETE", "/_local/faults")

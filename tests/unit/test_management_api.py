"""layers/management-api/files/server.js, run with node against a stand-in supervisord.

The stand-in speaks supervisord's XML-RPC over a unix socket and answers
supervisor.getAllProcessInfo with records shaped as supervisord 4 returns them
(the same field names and types, recorded from a real one); the real
supervisord is exercised by the devpod integration test.

The API's port is published, so most of this file is about what a hostile client can
send: a seeded fuzz of malformed requests over raw sockets (127.0.0.1 only), slow
clients, too many connections, and the token check.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import socketserver
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler

import pytest

from tests.conftest import tool_missing

SERVER = Path(__file__).resolve().parents[2] / "layers" / "management-api" / "files" / "server.js"
TOKEN = "s3cr3t-tok"

# scripts/setup-host --test installs node; without it this module fails at collection.
if shutil.which("node") is None:
    tool_missing("node")

# The server's limits (LIMITS in server.js) that the tests lean on.
HEADERS_TIMEOUT = 10.0
CHECK_INTERVAL = 1.0
MAX_CONNECTIONS = 128

NOW = 1_764_200_000
PROCESSES: list[dict[str, Any]] = [
    {"name": "dbus", "group": "dbus", "start": NOW - 120, "stop": 0, "now": NOW,
     "state": 20, "statename": "RUNNING", "spawnerr": "", "exitstatus": 0,
     "logfile": "/var/log/dbus.log", "stdout_logfile": "/var/log/dbus.log",
     "stderr_logfile": "", "pid": 12, "description": "pid 12, uptime 0:02:00"},
    {"name": "sshd", "group": "sshd", "start": NOW - 100, "stop": 0, "now": NOW,
     "state": 20, "statename": "RUNNING", "spawnerr": "", "exitstatus": 0,
     "logfile": "/var/log/sshd.log", "stdout_logfile": "/var/log/sshd.log",
     "stderr_logfile": "", "pid": 13, "description": "pid 13, uptime 0:01:40"},
    {"name": "xfce4", "group": "xfce4", "start": 0, "stop": 0, "now": NOW,
     "state": 0, "statename": "STOPPED", "spawnerr": "", "exitstatus": 0,
     "logfile": "/var/log/xfce4.log", "stdout_logfile": "/var/log/xfce4.log",
     "stderr_logfile": "", "pid": 0, "description": "Not started"},
    {"name": "worker<&>\"1\"", "group": "pool", "start": NOW - 5, "stop": NOW - 1,
     "now": NOW, "state": 200, "statename": "FATAL",
     "spawnerr": "Exited too quickly", "exitstatus": 1, "logfile": "", "stdout_logfile": "",
     "stderr_logfile": "", "pid": 0,
     "description": "Exited too quickly (process log may have details) ünï"},
]


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2",)
    disable_nagle_algorithm = False  # TCP_NODELAY does not exist on unix sockets

    def address_string(self) -> str:  # a unix socket has no client address
        return "unix"


class FakeSupervisord(socketserver.ThreadingMixIn, socketserver.UnixStreamServer,
                      SimpleXMLRPCDispatcher):
    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.logRequests = False
        SimpleXMLRPCDispatcher.__init__(self, allow_none=False, encoding="utf-8")
        socketserver.UnixStreamServer.__init__(self, path, _Handler)
        self.calls: list[str] = []
        self.register_function(self._all, "supervisor.getAllProcessInfo")

    def _all(self) -> list[dict[str, Any]]:
        self.calls.append("supervisor.getAllProcessInfo")
        return PROCESSES


@dataclass
class Api:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def get(self, path: str, token: str | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", headers=headers or {})
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as res:
                return res.status, dict(res.headers), res.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read().decode()

    def raw(self, data: bytes, wait: float = 2.0) -> bytes:
        """Send bytes as they are; what comes back until the server closes or `wait` passes."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=wait) as conn:
            conn.sendall(data)
            return read_until_closed(conn, time.monotonic() + wait)

    def stderr(self) -> str:
        return self.log.with_suffix(".err").read_text(errors="replace")


def read_until_closed(conn: socket.socket, deadline: float) -> bytes:
    """What the server sends until it closes, `deadline` passes or one whole answer is in
    (a kept-alive connection would otherwise make every call wait out the deadline)."""
    got = b""
    while (left := deadline - time.monotonic()) > 0 and not whole_answer(got):
        conn.settimeout(left)
        try:
            chunk = conn.recv(65536)
        except (TimeoutError, ConnectionError):
            break
        if not chunk:
            break
        got += chunk
    return got


def whole_answer(got: bytes) -> bool:
    head, sep, body = got.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length: *(\d+)", head)
    return bool(sep and length and len(body) >= int(length.group(1)))


def status_of(answer: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.1 (\d{3}) ", answer)
    return int(match.group(1)) if match else None


def start_api(env: dict[str, str], tmp: Path) -> Api:
    # Files, not pipes: a pipe nobody drains would block node's (synchronous) writes.
    out, err = tmp / "api.out", tmp / "api.err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            ["node", str(SERVER)], stdout=stdout, stderr=stderr,
            env={"PATH": os.environ["PATH"], "PORT": "0", "BIND_ADDRESS": "127.0.0.1", **env})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        match = re.search(r"listening on 127\.0\.0\.1:(\d+)", out.read_text())
        if match:
            return Api(proc, int(match.group(1)), out)
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"server did not start: {out.read_text()} {err.read_text()}")


@pytest.fixture
def supervisord(tmp_path: Path) -> Iterator[FakeSupervisord]:
    sock = str(tmp_path / "supervisor.sock")
    server = FakeSupervisord(sock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def api_fixture(env: dict[str, str], tmp: Path) -> Iterator[Api]:
    api = start_api(env, tmp)
    yield api
    api.proc.terminate()
    api.proc.wait(timeout=5)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture
def api(supervisord: FakeSupervisord, token_file: Path, tmp_path: Path) -> Iterator[Api]:
    yield from api_fixture({"SUPERVISOR_SOCKET": str(supervisord.server_address),
                            "MANAGEMENT_API_TOKEN_FILE": str(token_file)}, tmp_path)


@pytest.fixture
def tokenless_api(supervisord: FakeSupervisord, tmp_path: Path) -> Iterator[Api]:
    yield from api_fixture({"SUPERVISOR_SOCKET": str(supervisord.server_address),
                            "MANAGEMENT_API_TOKEN_FILE": str(tmp_path / "none")}, tmp_path)


def test_health_is_the_seed_document(api: Api) -> None:
    status, headers, body = api.get("/health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert set(doc) == {"status", "timestamp", "uptime"}
    assert doc["status"] == "healthy"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["timestamp"])
    assert isinstance(doc["uptime"], (int, float)) and doc["uptime"] >= 0


def test_services_lists_every_program_with_its_state(api: Api) -> None:
    status, _, body = api.get("/services", token=TOKEN)
    assert status == 200
    doc = json.loads(body)
    assert doc["total"] == 4 and doc["running"] == 2
    by_name = {s["name"]: s for s in doc["services"]}
    assert by_name["sshd"] == {
        "name": "sshd", "group": "sshd", "state": "RUNNING", "running": True, "pid": 13,
        "uptime": 100, "exitstatus": 0, "description": "pid 13, uptime 0:01:40"}
    assert by_name["xfce4"]["state"] == "STOPPED" and by_name["xfce4"]["pid"] is None
    # XML escapes and a group other than the name come back decoded and qualified.
    fatal = by_name['pool:worker<&>"1"']
    assert fatal["state"] == "FATAL" and fatal["running"] is False
    assert fatal["description"].endswith("ünï")


def test_metrics_are_prometheus_text(api: Api) -> None:
    status, headers, body = api.get("/metrics", token=TOKEN)
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE supervisord_process_up gauge" in body
    assert 'supervisord_process_up{name="sshd",state="RUNNING"} 1' in body
    assert 'supervisord_process_up{name="xfce4",state="STOPPED"} 0' in body
    assert 'supervisord_process_up{name="pool:worker<&>\\"1\\"",state="FATAL"} 0' in body
    assert 'supervisord_process_uptime_seconds{name="dbus"} 120' in body
    assert "supervisord_up 1" in body
    assert re.search(r"^management_api_uptime_seconds \d+(\.\d+)?$", body, re.M)
    assert re.search(r"^process_resident_memory_bytes \d+$", body, re.M)
    for line in body.splitlines():  # every sample line is NAME{labels} VALUE
        assert line.startswith("#") or re.fullmatch(r"[a-z_]+(\{.*\})? [0-9.e+-]+", line), line


def test_unknown_path_and_method(api: Api) -> None:
    assert api.get("/nope", token=TOKEN)[0] == 404
    req = urllib.request.Request(f"http://127.0.0.1:{api.port}/health", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 405 and err.value.headers["Allow"] == "GET, HEAD"


def test_without_a_token_file_only_health_is_served(tokenless_api: Api, tmp_path: Path) -> None:
    assert tokenless_api.get("/health")[0] == 200
    for path in ("/services", "/metrics", "/nope"):
        for token in (None, "", "anything"):
            status, _, body = tokenless_api.get(path, token=token)
            assert status == 503 and "no API token" in json.loads(body)["error"], (path, token)
    assert "no token file" in tokenless_api.stderr()
    # An empty file is no token either...
    (tmp_path / "none").write_text("\n")
    assert tokenless_api.get("/services", token="")[0] == 503
    # ...and a token written after start (the start-up hook, a rotation) counts at once.
    (tmp_path / "none").write_text("late-token\n")
    assert tokenless_api.get("/services", token="late-token")[0] == 200
    assert tokenless_api.get("/services")[0] == 401


def test_token_is_required_except_for_health(api: Api) -> None:
    assert api.get("/health")[0] == 200
    for path in ("/services", "/metrics", "/nope"):
        status, headers, _ = api.get(path)
        assert status == 401, path
        assert headers["WWW-Authenticate"] == "Bearer"
        for wrong in ("wrong", TOKEN[:-1], TOKEN + "-longer", "", f"{TOKEN} {TOKEN}"):
            assert api.get(path, token=wrong)[0] == 401, (path, wrong)
        for header in (f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}", f"Bearer {TOKEN}x"):
            assert api.get(path, headers={"Authorization": header})[0] == 401, (path, header)
    assert api.get("/services", token=TOKEN)[0] == 200
    assert api.get("/metrics", token=TOKEN)[0] == 200
    assert api.get("/nope", token=TOKEN)[0] == 404
    # The scheme is case-insensitive (RFC 9110); two Authorization headers are refused.
    assert api.get("/services", headers={"Authorization": f"bearer {TOKEN}"})[0] == 200
    two = (f"GET /services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
           f"Authorization: Bearer wrong\r\nConnection: close\r\n\r\n").encode()
    assert status_of(api.raw(two)) == 401


def test_token_rotation_needs_no_restart(api: Api, token_file: Path) -> None:
    token_file.write_text("rotated\n")
    assert api.get("/services", token=TOKEN)[0] == 401
    assert api.get("/services", token="rotated")[0] == 200
    token_file.write_text("x" * 5000)  # over 4 KiB: not a token file
    assert api.get("/services", token="x" * 5000)[0] == 503
    token_file.unlink()
    assert api.get("/services", token="rotated")[0] == 503
    assert "larger than 4096 bytes" in api.stderr()


def test_supervisord_down(token_file: Path, tmp_path: Path) -> None:
    env = {"SUPERVISOR_SOCKET": str(tmp_path / "absent.sock"),
           "MANAGEMENT_API_TOKEN_FILE": str(token_file)}
    for api in api_fixture(env, tmp_path):
        status, _, body = api.get("/services", token=TOKEN)
        assert status == 503 and "supervisord unavailable" in json.loads(body)["error"]
        status, _, body = api.get("/metrics", token=TOKEN)
        assert status == 200 and "supervisord_up 0" in body
        assert api.get("/health")[0] == 200


def test_bind_address_and_port(token_file: Path, tmp_path: Path) -> None:
    with socket.socket() as probe:  # a free port, then the server on it
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {"PORT": str(port), "BIND_ADDRESS": "127.0.0.1",
           "MANAGEMENT_API_TOKEN_FILE": str(token_file)}
    for api in api_fixture(env, tmp_path):
        assert api.port == port and api.get("/health")[0] == 200
    bad = subprocess.run(["node", str(SERVER)], env={"PATH": os.environ["PATH"], "PORT": "90x"},
                         capture_output=True, text=True, timeout=10)
    assert bad.returncode == 2 and 'PORT="90x" is not a port number' in bad.stderr


def test_bad_requests_get_their_status(api: Api) -> None:
    host = b"Host: x\r\n"
    auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
    cases = {
        b"GET // HTTP/1.1\r\n" + host + b"\r\n": 400,  # killed node before the fix
        b"GET //x:99999 HTTP/1.1\r\n" + host + b"\r\n": 400,
        b"GET //x:1 HTTP/1.1\r\n" + host + b"\r\n": 401,  # a host and the path "/"
        b"GET /%zz HTTP/1.1\r\n" + host + b"\r\n": 401,  # any other path needs the token
        b"GET /..%2f HTTP/1.1\r\n" + host + auth + b"\r\n": 404,
        b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\n" + host + b"\r\n": 431,
        b"GET /health HTTP/1.1\r\n" + host + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n": 431,
        b"GET /health HTTP/1.1\r\n\r\n": 400,  # HTTP/1.1 without Host
        b"FOO /health HTTP/1.1\r\n" + host + b"\r\n": 400,
        b"DELETE /health HTTP/1.1\r\n" + host + b"\r\n": 405,
        b"CONNECT x:22 HTTP/1.1\r\n" + host + b"\r\n": 405,
        b"GET /health HTTP/1.1\r\n" + host + b"Content-Length: 5\r\n\r\nhello": 413,
        b"GET /health HTTP/1.1\r\n" + host + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n": 413,
        b"GET /health HTTP/1.1\r\n" + host + b"Content-Length: -1\r\n\r\n": 400,
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03": 400,  # a TLS ClientHello
    }
    for request, want in cases.items():
        answer = api.raw(request)
        assert status_of(answer) == want, (request[:60], answer[:200])
    # A body is never read, and the connection ends with the answer (it is not
    # taken for a next request); no "100 Continue" invites one either.
    answer = api.raw(b"GET /health HTTP/1.1\r\n" + host + b"Expect: 100-continue\r\n"
                     b"Content-Length: 100000\r\n\r\n")
    assert status_of(answer) == 413 and b"100 Continue" not in answer
    assert b"connection: close" in answer.lower()
    assert api.proc.poll() is None


def trickle(port: int, data: bytes, every: float, limit: float) -> float | None:
    """A slowloris: one byte every `every` s, forever; seconds until the server hung
    up, None if it had not after `limit` s."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for i in range(10**6):
            if time.monotonic() - start > limit:
                return None
            try:
                conn.sendall(data[i % len(data):][:1])
                conn.settimeout(every)
                if conn.recv(4096) == b"":  # the server closed (after its answer, if any)
                    return time.monotonic() - start
            except TimeoutError:
                continue
            except ConnectionError:
                return time.monotonic() - start
    return None


def test_slow_clients_are_cut_off(api: Api) -> None:
    head = b"GET /health HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"z" * 4000
    limit = HEADERS_TIMEOUT + CHECK_INTERVAL + 3
    with ThreadPoolExecutor(4) as pool:
        slow = [pool.submit(trickle, api.port, head, 0.25, limit) for _ in range(4)]
        # Meanwhile the API answers others.
        time.sleep(1)
        assert api.get("/health")[0] == 200
        times = [f.result() for f in slow]
    assert all(t is not None and t < limit for t in times), times
    assert api.proc.poll() is None


def test_connections_are_capped(api: Api) -> None:
    idle = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(MAX_CONNECTIONS)]
    try:
        time.sleep(0.3)
        # One more is accepted and closed at once, not queued.
        with socket.create_connection(("127.0.0.1", api.port), timeout=3) as extra:
            extra.settimeout(3)
            try:
                got = extra.recv(1)  # a timeout here means it was queued: a failure
            except ConnectionResetError:
                got = b""
            assert got == b""
        assert "dropped: 128 connections open" in api.stderr()
    finally:
        for conn in idle:
            conn.close()
    time.sleep(0.3)
    assert api.get("/health")[0] == 200


# --- fuzz ---------------------------------------------------------------------

PATHS = ["//", "//x", "///", "%zz", "/%zz", "/..%2f", "/../../etc/passwd", "/%2e%2e/", "/%00",
         "/health/../services", "*", "/health?%zz", "/health#x", "http://[::1", "http://a:b@c/health",
         "/?" + "q=" * 3000, "/" + "a" * 20_000, "/\u00ff\u00fe", "/services?x=" + "%" * 50, " ", ""]
METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "PATCH", "FOO", "get", "G ET",
           "", "CONNECT", "PRI", "M-SEARCH", "X" * 300, "GET\x00"]
VERSIONS = ["HTTP/1.1", "HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/9.9", "http/1.1", "HTTP/1.1.1",
            "HTTP/", "", "HTTP/1.1 extra"]
HEADERS = ["Host: x", "Host:", "Host: x\r\nHost: y", f"Authorization: Bearer {TOKEN}",
           "Authorization: Bearer", "Authorization: Bearer " + "t" * 7000, "Authorization: \x01\x02",
           "Content-Length: 0", "Content-Length: 10", "Content-Length: -5", "Content-Length: abc",
           "Content-Length: 99999999999999999999999", "Content-Length: 1\r\nContent-Length: 2",
           "Transfer-Encoding: chunked", "Transfer-Encoding: gzip, chunked", "Expect: 100-continue",
           "Expect: nothing", "Upgrade: websocket\r\nConnection: Upgrade", "Upgrade: h2c",
           "Connection: keep-alive", "Connection: close", "X-Folded: a\r\n b", "No colon here",
           "Bad Name: x", "X-Nul: a\x00b", ": empty name", "X-Big: " + "b" * 20_000]
EOLS = ["\r\n", "\n", "\r", "\r\r\n"]


SUFFIXES = ["", "/", "/..", "/../services", "?", "?a=%zz", "?a=1&a=2", "%00", "%2f", ";x", "/./", "#"]


ODD_PARTS = ["method", "path", "version", "eol", "headers", "many headers", "body", "http/0.9"]


def request_text(rng: random.Random) -> bytes:
    """A good request with one to three parts made odd: one odd part at a time gets past
    node's parser to the handler often enough to fuzz both."""
    odd = set(rng.sample(ODD_PARTS, rng.choice([1, 1, 1, 2, 3])))
    method = rng.choice(METHODS) if "method" in odd else rng.choice(["GET", "HEAD"])
    path = rng.choice(["/health", "/services", "/metrics", "/nope"]) + rng.choice(SUFFIXES)
    path = rng.choice(PATHS) if "path" in odd else path
    version = rng.choice(VERSIONS) if "version" in odd else "HTTP/1.1"
    eol = rng.choice(EOLS) if "eol" in odd else "\r\n"
    if "http/0.9" in odd:  # a request line and nothing else
        return f"{method or 'GET'} {path}{eol}".encode("utf-8", "surrogateescape")
    headers = ["Host: x"] + ([f"Authorization: Bearer {TOKEN}"] if rng.random() < 0.5 else [])
    if "headers" in odd:
        headers = rng.sample(headers, rng.randint(0, len(headers))) + rng.sample(HEADERS, rng.randint(1, 3))
        rng.shuffle(headers)
    if "many headers" in odd:
        headers += [f"X-{i}: {i}" for i in range(rng.choice([100, 3000]))]
    body = "x" * rng.choice([1, 10, 5000]) if "body" in odd else ""
    line = " ".join(x for x in (method, path, version) if x)
    return (line + eol + "".join(h + eol for h in headers) + eol + body).encode("utf-8", "surrogateescape")


def mutate(rng: random.Random, data: bytearray) -> bytearray:
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(data) + 1)
        op = rng.random()
        if op < 0.4 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif op < 0.7:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 20)))
        else:
            del data[at:at + rng.randint(1, 20)]
    return data


@dataclass(frozen=True)
class Case:
    data: bytes
    half_close: bool  # shut down our sending side after the data (the server sees EOF)
    wait: float       # how long we wait for an answer or a close


def fuzz_cases(seed: int, count: int) -> list[Case]:
    """`count` malformed requests: structured nonsense, mutations of a good request,
    raw garbage, and truncations (left open or half-closed)."""
    rng = random.Random(seed)
    good = f"GET /services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n\r\n".encode()
    cases = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.6:
            data = request_text(rng)
        elif kind < 0.72:
            data = bytes(mutate(rng, bytearray(good)))
        elif kind < 0.8:
            data = bytes(rng.randrange(256) for _ in range(rng.randint(1, 3000)))
        else:  # truncated, possibly after a complete request (pipelined)
            whole = (good if rng.random() < 0.3 else b"") + request_text(rng)
            data = whole[:rng.randrange(1, len(whole))]
        cases.append(Case(data, half_close=rng.random() < 0.5, wait=rng.choice([0.2, 0.5, 1.0])))
    return cases


def send_case(port: int, case: Case) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
        try:
            conn.sendall(case.data)
            if case.half_close:
                conn.shutdown(socket.SHUT_WR)
        except ConnectionError:
            return  # the server hung up on us mid-send: fine
        read_until_closed(conn, time.monotonic() + case.wait)


def watch(proc: subprocess.Popen[bytes], stop: threading.Event, exits: list[int | None]) -> None:
    while not stop.wait(0.05):
        if proc.poll() is not None:
            exits.append(proc.returncode)
            return


def test_fuzz_malformed_requests_never_stop_the_server(api: Api) -> None:
    started = time.monotonic()
    pid = api.proc.pid
    cases = fuzz_cases(seed=20251127, count=1000)
    assert len(cases) == 1000
    stop, exits = threading.Event(), list[int | None]()
    watcher = threading.Thread(target=watch, args=(api.proc, stop, exits), daemon=True)
    watcher.start()
    with ThreadPoolExecutor(32) as pool:
        # Slow clients alongside: a byte at a time, then nothing; the server must hang up.
        slow = [pool.submit(trickle_then_stop, api.port, head, HEADERS_TIMEOUT + CHECK_INTERVAL + 3)
                for head in (b"GET /heal", b"GET /health HTTP/1.1\r\nHost: x\r\n", b"G") * 2]
        for _ in pool.map(lambda c: send_case(api.port, c), cases):
            assert not exits, f"node exited ({exits}): {api.stderr()[-3000:]}"
        slow_times = [s.result() for s in slow]
    stop.set()
    watcher.join()
    elapsed = time.monotonic() - started
    assert not exits and api.proc.poll() is None and api.proc.pid == pid, api.stderr()[-3000:]
    assert all(t is not None for t in slow_times), slow_times
    status, _, body = api.get("/health")
    assert status == 200 and json.loads(body)["uptime"] >= elapsed  # the same process all along
    assert api.get("/services", token=TOKEN)[0] == 200
    log = api.stderr()
    assert "uncaught" not in log and "unhandled" not in log and "internal error" not in log, log[-3000:]
    # The log is rate-limited: a flood of bad requests cannot fill the disk.
    assert len(log.splitlines()) <= 40, log[-3000:]
    assert elapsed < 60


def trickle_then_stop(port: int, data: bytes, limit: float) -> float | None:
    """Send `data` a byte at a time, then go quiet; seconds until the server hung up."""
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for byte in data:
            conn.sendall(bytes([byte]))
            time.sleep(0.05)
        read_until_closed(conn, start + limit)
        closed = time.monotonic() - start
    return closed if closed < limit else None


def test_xmlrpc_fault_is_an_error() -> None:
    script = f"""
const {{ parseXmlRpcResponse }} = require({json.dumps(str(SERVER))});
try {{
  parseXmlRpcResponse('<?xml version="1.0"?><methodResponse><fault><value><struct>' +
    '<member><name>faultCode</name><value><int>2</int></value></member>' +
    '<member><name>faultString</name><value><string>SHUTDOWN_STATE</string></value></member>' +
    '</struct></value></fault></methodResponse>');
  process.exit(1);
}} catch (err) {{ console.log(err.message); }}
console.log(JSON.stringify(parseXmlRpcResponse('<methodResponse><params><param><value>' +
  '<array><data><value>plain</value><value><boolean>1</boolean></value><value><nil/></value>' +
  '<value><double>1.5</double></value><value><struct></struct></value></data></array>' +
  '</value></param></params></methodResponse>')));
"""
    out = subprocess.run(["node", "-e", script], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["XML-RPC fault 2: SHUTDOWN_STATE",
                                       '["plain",true,null,1.5,{}]']


def unix_health(path: Path) -> int | None:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(3)
        s.connect(str(path))
        s.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        return status_of(s.recv(4096))


def test_the_health_socket_answers_while_the_public_port_is_full(
        supervisord: FakeSupervisord, token_file: Path, tmp_path: Path) -> None:
    """The attack of an AI user: every connection slot of the public port held idle. The
    probe that restarts the Pod goes through the health socket (root-only folder, 0600) and
    still answers; the public port has no room left."""
    health = tmp_path / "run" / "health.sock"
    health.parent.mkdir(mode=0o700)
    api = start_api({"SUPERVISOR_SOCKET": str(supervisord.server_address),
                     "MANAGEMENT_API_TOKEN_FILE": str(token_file), "HEALTH_SOCKET": str(health)}, tmp_path)
    idle = []
    try:
        deadline = time.monotonic() + 10
        while not health.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert oct(health.stat().st_mode & 0o777) == "0o600"
        idle = [socket.create_connection(("127.0.0.1", api.port)) for _ in range(MAX_CONNECTIONS + 50)]
        for conn in idle:
            conn.sendall(b"GET /health HTTP/1.1\r\n")  # and then silence
        time.sleep(0.5)  # let the server accept them (no event to wait on: it only logs drops)
        started = time.monotonic()
        assert unix_health(health) == 200
        assert time.monotonic() - started < 3
        # the public port: dropped at once (no slot left)
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", api.port), timeout=3) as extra:
            extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            if not extra.recv(1):
                raise ConnectionResetError("closed without an answer")
    finally:
        for conn in idle:
            conn.close()
        api.proc.terminate()
        api.proc.wait(timeout=5)

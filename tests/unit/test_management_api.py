"""layers/management-api/files/server.js, run with node against a stand-in supervisord.

The stand-in speaks supervisord's XML-RPC over a unix socket and answers
supervisor.getAllProcessInfo with records shaped as supervisord 4 returns them
(the same field names and types, recorded from a real one); the real
supervisord is exercised by the devpod integration test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socketserver
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xmlrpc.server import SimpleXMLRPCDispatcher, SimpleXMLRPCRequestHandler

import pytest

SERVER = Path(__file__).resolve().parents[2] / "layers" / "management-api" / "files" / "server.js"

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node not installed")

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


class Api:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.port = proc, port

    def get(self, path: str, token: str | None = None) -> tuple[int, dict[str, str], str]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=5) as res:
                return res.status, dict(res.headers), res.read().decode()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read().decode()


def start_api(env: dict[str, str]) -> Api:
    proc = subprocess.Popen(
        ["node", str(SERVER)], env={"PATH": os.environ["PATH"], "PORT": "0",
                                    "HOST": "127.0.0.1", **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    match = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert match, (line, proc.stderr.read() if proc.stderr else "")
    return Api(proc, int(match.group(1)))


@pytest.fixture
def supervisord(tmp_path: Path) -> Iterator[FakeSupervisord]:
    sock = str(tmp_path / "supervisor.sock")
    server = FakeSupervisord(sock)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def api_fixture(env: dict[str, str]) -> Iterator[Api]:
    api = start_api(env)
    yield api
    api.proc.terminate()
    api.proc.wait(timeout=5)


@pytest.fixture
def api(supervisord: FakeSupervisord, tmp_path: Path) -> Iterator[Api]:
    yield from api_fixture({"SUPERVISOR_SOCKET": supervisord.server_address,  # type: ignore[dict-item]
                            "MANAGEMENT_API_TOKEN_FILE": str(tmp_path / "none")})


@pytest.fixture
def token_api(supervisord: FakeSupervisord, tmp_path: Path) -> Iterator[Api]:
    token = tmp_path / "token"
    token.write_text("s3cr3t-tok\n")
    yield from api_fixture({"SUPERVISOR_SOCKET": supervisord.server_address,  # type: ignore[dict-item]
                            "MANAGEMENT_API_TOKEN_FILE": str(token)})


def test_health_is_the_seed_document(api: Api) -> None:
    status, headers, body = api.get("/health")
    assert status == 200 and headers["Content-Type"] == "application/json"
    doc = json.loads(body)
    assert set(doc) == {"status", "timestamp", "uptime"}
    assert doc["status"] == "healthy"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", doc["timestamp"])
    assert isinstance(doc["uptime"], (int, float)) and doc["uptime"] >= 0


def test_services_lists_every_program_with_its_state(api: Api) -> None:
    status, _, body = api.get("/services")
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
    status, headers, body = api.get("/metrics")
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
    assert api.get("/nope")[0] == 404
    req = urllib.request.Request(f"http://127.0.0.1:{api.port}/health", method="POST", data=b"")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    assert err.value.code == 405


def test_without_token_everything_is_open(api: Api) -> None:
    assert api.get("/services")[0] == 200
    assert api.get("/metrics")[0] == 200


def test_token_is_required_except_for_health(token_api: Api) -> None:
    assert token_api.get("/health")[0] == 200
    for path in ("/services", "/metrics", "/nope"):
        status, headers, _ = token_api.get(path)
        assert status == 401, path
        assert headers["WWW-Authenticate"] == "Bearer"
        assert token_api.get(path, token="wrong")[0] == 401
        assert token_api.get(path, token="s3cr3t-to")[0] == 401
        assert token_api.get(path, token="s3cr3t-tok-longer")[0] == 401
    assert token_api.get("/services", token="s3cr3t-tok")[0] == 200
    assert token_api.get("/metrics", token="s3cr3t-tok")[0] == 200
    assert token_api.get("/nope", token="s3cr3t-tok")[0] == 404


def test_token_from_env_when_no_file(supervisord: FakeSupervisord, tmp_path: Path) -> None:
    env = {"SUPERVISOR_SOCKET": str(supervisord.server_address),
           "MANAGEMENT_API_TOKEN_FILE": str(tmp_path / "none"), "MANAGEMENT_API_TOKEN": "envtok"}
    for api in api_fixture(env):
        assert api.get("/services")[0] == 401
        assert api.get("/services", token="envtok")[0] == 200


def test_supervisord_down(tmp_path: Path) -> None:
    env = {"SUPERVISOR_SOCKET": str(tmp_path / "absent.sock"),
           "MANAGEMENT_API_TOKEN_FILE": str(tmp_path / "none")}
    for api in api_fixture(env):
        status, _, body = api.get("/services")
        assert status == 503 and "supervisord unavailable" in json.loads(body)["error"]
        status, _, body = api.get("/metrics")
        assert status == 200 and "supervisord_up 0" in body
        assert api.get("/health")[0] == 200


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

"""Fixtures that run the real spar sidecar for the Dapr Python SDK tests.

One spar process is started per test session:

    spar run --app-id pytest-<random> --dapr-http-port <free> \
        --dapr-grpc-port <free> --metrics-port <free> --resources-path <tmp>

with three state store components in <tmp>: ``statestore`` (state.sqlite, file
in <tmp>), ``memstore`` (state.in-memory) and ``redisstore`` (state.redis on
the local Redis). The binary is ``$SPAR_BIN``,
default ``target/debug/spar`` under the repository root.

When a test fails, what the sidecar printed while it ran is attached to the
failure report (section "spar sidecar output").
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

STARTUP_TIMEOUT_S = 15.0
SHUTDOWN_TIMEOUT_S = 10.0
LOG_TAIL_LINES = 200

# The state stores the sidecar is given; tests parametrize over them.
STATE_STORES = {
    "statestore": "state.sqlite",
    "memstore": "state.in-memory",
    "redisstore": "state.redis",
}


def spar_bin() -> Path:
    path = Path(os.environ.get("SPAR_BIN") or REPO_ROOT / "target" / "debug" / "spar")
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


def free_ports(n: int) -> list[int]:
    """n distinct free loopback TCP ports (all held open while choosing)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def component_yaml(name: str, type_: str, metadata: dict[str, str]) -> str:
    lines = [
        "apiVersion: dapr.io/v1alpha1",
        "kind: Component",
        "metadata:",
        f"  name: {name}",
        "spec:",
        f"  type: {type_}",
        "  version: v1",
    ]
    if metadata:
        lines.append("  metadata:")
        for key, value in metadata.items():
            # A JSON string is a valid YAML scalar: safe for any path.
            lines.append(f"  - name: {key}")
            lines.append(f"    value: {json.dumps(value)}")
    else:
        lines.append("  metadata: []")
    return "\n".join(lines) + "\n"


def _tail(path: Path, start: int = 0, max_lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read()
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    lines = data.decode("utf-8", "replace").splitlines()
    if len(lines) > max_lines:
        lines = [f"... ({len(lines) - max_lines} earlier lines cut)"] + lines[-max_lines:]
    return "\n".join(lines)


@dataclass
class Sidecar:
    app_id: str
    http_port: int
    grpc_port: int
    metrics_port: int
    workdir: Path
    resources_path: Path
    argv: list[str]
    stdout_path: Path
    stderr_path: Path
    proc: Optional[subprocess.Popen] = field(default=None, repr=False)
    # Set when the SDK's own health check failed once: later tests fail fast.
    sdk_health_failure: Optional[str] = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log_offsets(self) -> tuple[int, int]:
        def size(p: Path) -> int:
            try:
                return p.stat().st_size
            except OSError:
                return 0

        return size(self.stdout_path), size(self.stderr_path)

    def output(self, since: tuple[int, int] = (0, 0)) -> str:
        status = "running"
        if self.proc is not None and self.proc.poll() is not None:
            status = f"EXITED with code {self.proc.returncode}"
        return (
            f"$ {' '.join(self.argv)}\n"
            f"(pid {self.proc.pid if self.proc else '-'}, {status})\n"
            f"--- stdout ({self.stdout_path}) ---\n{_tail(self.stdout_path, since[0])}\n"
            f"--- stderr ({self.stderr_path}) ---\n{_tail(self.stderr_path, since[1])}\n"
        )

    def healthz_status(self, path: str = "/v1.0/healthz") -> Optional[int]:
        try:
            with urllib.request.urlopen(self.http_url + path, timeout=2) as resp:
                return resp.status
        except urllib.error.HTTPError as e:
            return e.code
        except (urllib.error.URLError, OSError):
            return None


_ACTIVE_SIDECAR: Optional[Sidecar] = None
_LOG_OFFSETS = pytest.StashKey[tuple[int, int]]()


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=SHUTDOWN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def start_sidecar(workdir: Path, extra_args: Optional[list[str]] = None) -> Sidecar:
    """Start spar with the test components in workdir; wait until healthy.
    ``extra_args`` are added to the command line (e.g. ``--app-port``)."""
    binary = spar_bin()
    if not binary.is_file():
        pytest.fail(
            f"spar binary not found at {binary}: build it (cargo build -p spar) "
            "or point SPAR_BIN at it",
            pytrace=False,
        )

    resources = workdir / "resources"
    resources.mkdir(parents=True, exist_ok=True)
    (resources / "statestore.yaml").write_text(
        component_yaml(
            "statestore",
            STATE_STORES["statestore"],
            {"connectionString": str(workdir / "state.db")},
        )
    )
    (resources / "memstore.yaml").write_text(
        component_yaml("memstore", STATE_STORES["memstore"], {})
    )
    # pub/sub: in memory, daprd's default name.
    (resources / "pubsub.yaml").write_text(component_yaml("pubsub", "pubsub.in-memory", {}))
    # The machine's real Redis; keys carry this run's unique app-id prefix.
    (resources / "redisstore.yaml").write_text(
        component_yaml("redisstore", STATE_STORES["redisstore"], {"redisHost": "127.0.0.1:6379"})
    )

    http_port, grpc_port, metrics_port = free_ports(3)
    app_id = f"pytest-{uuid.uuid4().hex[:8]}"
    argv = [
        str(binary),
        "run",
        "--app-id", app_id,
        "--dapr-http-port", str(http_port),
        "--dapr-grpc-port", str(grpc_port),
        "--metrics-port", str(metrics_port),
        # Loopback only: also keeps mDNS announcements off the network.
        "--dapr-listen-addresses", "127.0.0.1",
        "--resources-path", str(resources),
        *(extra_args or []),
    ]
    sc = Sidecar(
        app_id=app_id,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        workdir=workdir,
        resources_path=resources,
        argv=argv,
        stdout_path=workdir / "spar.stdout.log",
        stderr_path=workdir / "spar.stderr.log",
    )
    env = dict(os.environ)
    env.setdefault("RUST_BACKTRACE", "1")
    with open(sc.stdout_path, "wb") as out, open(sc.stderr_path, "wb") as err:
        sc.proc = subprocess.Popen(
            argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = None
    while True:
        if sc.proc.poll() is not None:
            pytest.fail(
                f"spar exited during start-up with code {sc.proc.returncode}\n{sc.output()}",
                pytrace=False,
            )
        last = sc.healthz_status()
        if last == 204:
            return sc
        if time.monotonic() >= deadline:
            _stop(sc.proc)
            pytest.fail(
                f"spar did not answer 204 on GET {sc.http_url}/v1.0/healthz within "
                f"{STARTUP_TIMEOUT_S:.0f}s (last answer: {last or 'no connection'})\n"
                f"{sc.output()}",
                pytrace=False,
            )
        time.sleep(0.1)


@pytest.fixture(scope="session")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """The running spar sidecar (one per session); SDK env vars point at it."""
    global _ACTIVE_SIDECAR
    sc = start_sidecar(tmp_path_factory.mktemp("spar"))
    _ACTIVE_SIDECAR = sc
    with pytest.MonkeyPatch.context() as mp:
        # The SDK reads these when a client is made (DaprClient's health
        # check polls http://127.0.0.1:$DAPR_HTTP_PORT/v1.0/healthz/outbound).
        for var in ("DAPR_HTTP_ENDPOINT", "DAPR_GRPC_ENDPOINT", "DAPR_API_TOKEN"):
            mp.delenv(var, raising=False)
        mp.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
        mp.setenv("DAPR_HTTP_PORT", str(sc.http_port))
        mp.setenv("DAPR_GRPC_PORT", str(sc.grpc_port))
        mp.setenv("DAPR_HEALTH_TIMEOUT", "10")
        # A deadline on every SDK call, so a hung sidecar fails a test
        # instead of hanging it.
        mp.setenv("DAPR_API_TIMEOUT_SECONDS", "20")
        try:
            yield sc
        finally:
            _ACTIVE_SIDECAR = None
            assert sc.proc is not None
            _stop(sc.proc)


@pytest.fixture
def dapr_client(sidecar: Sidecar):
    """A DaprClient (official SDK, gRPC) connected to the sidecar."""
    from dapr.clients import DaprClient

    if sidecar.sdk_health_failure:
        pytest.fail(sidecar.sdk_health_failure, pytrace=False)
    try:
        client = DaprClient(address=sidecar.grpc_address)
    except TimeoutError as e:
        sidecar.sdk_health_failure = (
            f"DaprClient() could not see the sidecar as healthy ({e}): the SDK polls "
            f"GET {sidecar.http_url}/v1.0/healthz/outbound and wants a 2xx "
            f"(got {sidecar.healthz_status('/v1.0/healthz/outbound') or 'no connection'})"
        )
        pytest.fail(sidecar.sdk_health_failure, pytrace=False)
    with client:
        yield client


@pytest.fixture(params=sorted(STATE_STORES))
def store(request: pytest.FixtureRequest) -> str:
    """Name of a configured state store; tests using it run once per store."""
    return request.param


@pytest.fixture
def key(request: pytest.FixtureRequest) -> "KeyFactory":
    return KeyFactory(request.node.name)


class KeyFactory:
    """Unique state keys for one test: key() -> 'test_x-<uuid>-<n>'."""

    def __init__(self, test_name: str) -> None:
        base = "".join(c if c.isalnum() or c in "-_" else "_" for c in test_name)
        self._prefix = f"{base[:40]}-{uuid.uuid4().hex[:12]}"
        self._n = 0

    def __call__(self) -> str:
        self._n += 1
        return f"{self._prefix}-{self._n}"


# ---------------------------------------------------- sidecar log on failure


def pytest_runtest_setup(item: pytest.Item) -> None:
    if _ACTIVE_SIDECAR is not None:
        item.stash[_LOG_OFFSETS] = _ACTIVE_SIDECAR.log_offsets()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    sc = _ACTIVE_SIDECAR
    if report.failed and sc is not None and "sidecar" in getattr(item, "fixturenames", ()):
        since = item.stash.get(_LOG_OFFSETS, (0, 0))
        report.sections.append((f"spar sidecar output ({report.when})", sc.output(since)))

"""Local services the project installs and starts itself: Redis and FerretDB.

Used by ``fleet services up|down|status``, the demo and the test fixtures. Each
service runs on loopback with its data under one folder (``FLEET_HOME``), and is
remembered by a pid file there so ``down`` stops exactly what ``up`` started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fleet.constants import FERRETDB_MODULE, FERRETDB_VERSION
from fleet.errors import ServiceError
from fleet.settings import LOCAL_MONGO_PORT, LOCAL_REDIS_PORT, Settings, ferretdb_data_dir

#: How long a freshly started service may take to accept connections (s).
START_TIMEOUT = 30.0


@dataclass(frozen=True)
class Service:
    """A local service: its name, port, the folder for its data, log and pid, and the
    folder where built binaries are cached (shared by every data folder)."""

    name: str
    port: int
    home: Path
    bin_dir: Path

    @property
    def dir(self) -> Path:
        return self.home / "services" / self.name

    @property
    def pid_file(self) -> Path:
        return self.dir / "pid"

    @property
    def log_file(self) -> Path:
        return self.dir / f"{self.name}.log"


# --- binaries ---------------------------------------------------------------------


def redis_binary() -> Path:
    """Path to redis-server, installing Debian's package with apt-get when missing."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    if not shutil.which("apt-get"):
        raise ServiceError(
            "redis-server is not installed and apt-get is not available: install Redis 7 "
            "yourself, or point FLEET_BROKER_URL at an existing Redis"
        )
    _apt_install(["redis-server"])
    found = shutil.which("redis-server")
    if not found:
        raise ServiceError("apt-get finished but redis-server is still not on PATH")
    return Path(found)


#: Debian's packages for the browser test, and the programs they put on PATH.
BROWSER_PACKAGES = {"chromium": "chromium", "chromium-driver": "chromedriver"}


def browser_binaries() -> tuple[Path, Path]:
    """chromium and chromedriver (the console's browser test), installed with apt-get when missing."""
    if not all(shutil.which(program) for program in BROWSER_PACKAGES.values()):
        if not shutil.which("apt-get"):
            raise ServiceError("chromium and chromedriver are not installed and apt-get is not available")
        _apt_install(list(BROWSER_PACKAGES))
    found = [shutil.which(program) for program in BROWSER_PACKAGES.values()]
    if not all(found):
        raise ServiceError("apt-get finished but chromium or chromedriver is still not on PATH")
    return Path(str(found[0])), Path(str(found[1]))


def _apt_install(packages: list[str]) -> None:
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}  # CI has no terminal to answer prompts
    what = f"installing {' '.join(packages)} with apt-get"
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *packages]):
        _run([*prefix, *cmd], what, env=env)


def ferretdb_binary(bin_dir: Path) -> Path:
    """Path to a FerretDB binary, built once from the Go module proxy and cached in ``home``.

    ``go install`` gives a binary that panics at start (FerretDB issue 2982): the
    module lacks ``build/version/version.txt``. So: copy the module source, write
    that file, build.
    """
    target = bin_dir.resolve() / f"ferretdb-{FERRETDB_VERSION}"
    if target.exists():
        return target
    go = shutil.which("go")
    if not go:
        raise ServiceError(
            "building FerretDB needs Go (1.22+), which is not installed: install Go, or point "
            "FLEET_MONGO_URL at an existing MongoDB"
        )
    module = f"{FERRETDB_MODULE}@{FERRETDB_VERSION}"
    out = _run([go, "mod", "download", "-json", module], "downloading FerretDB source")
    source = Path(json.loads(out)["Dir"])
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        work = Path(tmp) / "src"
        shutil.copytree(source, work)
        _make_writable(work)
        (work / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION + "\n")
        partial = Path(tmp) / "ferretdb"
        env = {**os.environ, "CGO_ENABLED": "0"}
        _run([go, "build", "-o", str(partial), "./cmd/ferretdb"], "building FerretDB", work, env)
        partial.replace(target)  # atomic: a half-built binary is never cached
    return target


def _make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)


def _run(cmd: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ServiceError(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise ServiceError(f"{what} failed (exit {done.returncode}): {' | '.join(tail)}")
    return done.stdout


# --- start / stop -----------------------------------------------------------------


def start_redis(service: Service) -> int:
    """Start redis-server on loopback with an append-only file (fsynced every second), so a
    restart keeps queued heartbeats, unacked ones and agent locks; ``noeviction`` (evicted
    keys are lost tasks)."""
    binary = redis_binary()
    service.dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(binary),
        "--bind",
        "127.0.0.1",
        "--port",
        str(service.port),
        "--save",
        "",
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--maxmemory-policy",
        "noeviction",
        "--dir",
        str(service.dir.resolve()),
        "--logfile",
        str(service.log_file.resolve()),
    ]
    return _spawn(service, cmd)


def start_ferretdb(service: Service) -> int:
    """Start FerretDB v1 with its SQLite backend on loopback."""
    binary = ferretdb_binary(service.bin_dir)
    data = ferretdb_data_dir(service.home)
    data.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(binary),
        "--handler=sqlite",
        f"--sqlite-url=file:{data}/",
        f"--listen-addr=127.0.0.1:{service.port}",
        f"--state-dir={data}",
        "--telemetry=disable",
        "--debug-addr=-",
        "--log-level=warn",
    ]
    return _spawn(service, cmd)


STARTERS = {"redis": start_redis, "ferretdb": start_ferretdb}


def _spawn(service: Service, cmd: list[str]) -> int:
    if running_pid(service) is not None:
        return running_pid(service) or 0
    if port_open(service.port):
        raise ServiceError(f"{service.name}: port 127.0.0.1:{service.port} is already in use")
    with service.log_file.open("ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    service.pid_file.write_text(str(proc.pid))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            service.pid_file.unlink(missing_ok=True)
            raise ServiceError(f"{service.name} exited at start (see {service.log_file})")
        if port_open(service.port):
            return proc.pid
        time.sleep(0.05)  # poll: wait for the port with a deadline
    stop(service)
    raise ServiceError(f"{service.name} did not listen on {service.port} within {START_TIMEOUT}s")


def running_pid(service: Service) -> int | None:
    """The pid of the service this folder started, if it is still alive."""
    try:
        pid = int(service.pid_file.read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def stop(service: Service) -> bool:
    """Stop the service started from this folder; True if one was running."""
    pid = running_pid(service)
    if pid is None:
        service.pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)  # poll: wait for exit with a deadline
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    service.pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def free_port() -> int:
    """A TCP port on loopback that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the project's local set ------------------------------------------------------


def local_services(home: Path, redis_port: int, mongo_port: int) -> list[Service]:
    """The two local services with their data under ``home`` and binaries in ``home/bin``."""
    bin_dir = home / "bin"
    return [
        Service("redis", redis_port, home, bin_dir),
        Service("ferretdb", mongo_port, home, bin_dir),
    ]


def for_settings(settings: Settings) -> list[Service]:
    """The local services these settings ask for: only those whose ``FLEET_*_URL`` was not given."""
    wanted = {"redis": settings.local_redis, "ferretdb": settings.local_mongo}
    every = local_services(settings.home, LOCAL_REDIS_PORT, LOCAL_MONGO_PORT)
    return [service for service in every if wanted[service.name]]


def up(services: list[Service]) -> dict[str, int]:
    """Start every service not already running; return name -> pid."""
    return {svc.name: STARTERS[svc.name](svc) for svc in services}


def down(services: list[Service]) -> dict[str, bool]:
    """Stop every service; return name -> whether it was running."""
    return {svc.name: stop(svc) for svc in services}


def isolated(
    prefix: str, bin_dir: Path, db_name: str, mongo_url: str | None = None
) -> tuple[list[Service], dict[str, str]]:
    """Services on free ports in a fresh temporary folder, and the ``FLEET_*`` env to reach them.

    For tests and benchmarks: parallel runs never share data, pid files or ports. With
    ``mongo_url`` (``FLEET_TEST_MONGO_URL`` / ``FLEET_BENCH_MONGO_URL``) the store is that
    MongoDB-wire server instead of a fresh FerretDB; Redis is always a fresh local one.
    """
    home = Path(tempfile.mkdtemp(prefix=prefix))
    redis_svc = Service("redis", free_port(), home, bin_dir)
    env = {
        "FLEET_BROKER_URL": f"redis://127.0.0.1:{redis_svc.port}/0",
        "FLEET_MONGO_DB": db_name,
        "FLEET_HOME": str(home),
    }
    if mongo_url:
        return [redis_svc], {**env, "FLEET_MONGO_URL": mongo_url}
    mongo_svc = Service("ferretdb", free_port(), home, bin_dir)  # one cached FerretDB build for all
    services = [redis_svc, mongo_svc]
    env["FLEET_MONGO_URL"] = f"mongodb://127.0.0.1:{mongo_svc.port}/"
    env["FLEET_STORE_SQLITE_DIR"] = str(ferretdb_data_dir(home))
    return services, env

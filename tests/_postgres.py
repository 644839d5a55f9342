"""A throwaway PostgreSQL server for the tests: found (or installed), started, stopped.

:func:`server` starts one cluster per test session, on first use: ``initdb`` into a temporary
directory (as the ``postgres`` user when the tests run as root, since ``initdb`` refuses root),
then ``pg_ctl start`` on 127.0.0.1, on a free port, with its socket in that directory and
durability switched off (the tests crash clients, never the server). Each test then takes a
schema of its own (:meth:`Server.fresh_url`), so that tests are independent and cheap.

Binaries are looked for with ``pg_config --bindir``, under ``/usr/lib/postgresql/*/bin`` and on
``PATH``. When there are none and the tests run as root, the distribution's packages are
installed (``apt-get install -y postgresql``, as on a fresh CI machine). Otherwise the tests that
need the server skip with a message saying how to run them; with ``CI=true`` they fail instead.
"""

# The server's own tools, found by path or installed by the distribution: nothing untrusted.
# ruff: noqa: S603, S607

from __future__ import annotations

import atexit
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Final, NoReturn

import pytest

if TYPE_CHECKING:
    from retouraanvraag.adapters.postgres import PostgresStorage

HOW_TO_RUN: Final = (
    "PostgreSQL is not installed here: install it (Debian: `apt-get install -y postgresql`) "
    "or run the tests as root, which installs it; `make test` on CI (CI=true) does"
)
#: The environment variable a docs example reads its database URL from.
URL_VARIABLE: Final = "RETOURAANVRAAG_POSTGRES_URL"
_SEARCH: Final = ("/usr/lib/postgresql/*/bin", "/usr/local/pgsql/bin")
_SERVER_USER: Final = "postgres"
_DATABASE: Final = "retouraanvraag"


class Missing(RuntimeError):
    """No PostgreSQL server can be had here."""


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(path))) or (0,)


def find_bindir(path: str | None = None, search: tuple[str, ...] = _SEARCH) -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or ``None``.

    Args:
        path: the ``PATH`` to search (the process's own by default).
        search: the directories (``*`` for a version) to look in beside ``PATH``.
    """
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config", path=path)
    if pg_config is not None:
        found = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if found:
            candidates.append(Path(found))
    for pattern in search:  # the newest version first
        found_here = Path("/").glob(pattern.lstrip("/")) if pattern.startswith("/") else ()
        candidates.extend(sorted(found_here, key=_version_key, reverse=True))
    initdb = shutil.which("initdb", path=path)
    if initdb is not None:
        candidates.append(Path(initdb).resolve().parent)
    for candidate in candidates:
        if all((candidate / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return candidate
    return None


def install() -> None:
    """Install the distribution's PostgreSQL packages (root on Debian or Ubuntu only).

    Raises:
        Missing: not root, no ``apt-get``, or the installation failed.
    """
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Missing(HOW_TO_RUN)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "postgresql"],
    ):
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise Missing(f"`{' '.join(command)}` failed ({done.returncode}):\n{tail}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Server:
    """A PostgreSQL cluster in a temporary directory, listening on 127.0.0.1 only."""

    def __init__(self, bindir: Path, *, durable: bool = False) -> None:
        """Prepare (not start) a cluster run by ``bindir``'s binaries.

        Args:
            bindir: where ``initdb``, ``pg_ctl`` and ``postgres`` are.
            durable: sync every commit to disk, as a production server does (the benchmarks);
                the tests switch that off, since they crash clients, never the server.
        """
        self.bindir = bindir
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="ra-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.owner_pid = os.getpid()
        self._user: str | None = None
        self._serial = itertools.count(1)
        self._lock = threading.Lock()
        self.started = False

    def _run(self, *command: str | os.PathLike[str]) -> None:
        done = subprocess.run(
            [os.fspath(part) for part in command],
            capture_output=True,
            text=True,
            user=self._user,
            cwd=self.root,
            check=False,
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise Missing(
                f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()}\n{log}"
            )

    def start(self) -> None:
        """``initdb`` and start the cluster; wait until it accepts connections.

        Raises:
            Missing: the cluster cannot be made or started.
        """
        if os.geteuid() == 0:
            # initdb refuses to run as root: the cluster belongs to the postgres user.
            try:
                account = pwd.getpwnam(_SERVER_USER)
            except KeyError:
                subprocess.run(
                    ["useradd", "--system", "--no-create-home", _SERVER_USER], check=True
                )
                account = pwd.getpwnam(_SERVER_USER)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self._user = _SERVER_USER
        self._run(
            self.bindir / "initdb",
            "--pgdata",
            self.data,
            "--username",
            "postgres",
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
            "--no-sync",
        )
        self.port = _free_port()
        options = " ".join(
            (
                "-c listen_addresses=127.0.0.1",
                f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}",
                *(
                    ()
                    if self.durable
                    else ("-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off")
                ),
                "-c max_connections=400",
                "-c shared_buffers=128MB",
                "-c log_min_messages=warning",
            )
        )
        self._run(
            self.bindir / "pg_ctl", "--pgdata", self.data, "--log", self.log,
            "--options", options, "--wait", "--timeout", "60", "start",
        )  # fmt: skip
        self.started = True
        import psycopg  # noqa: PLC0415 - only once the server runs

        with psycopg.connect(self.url("postgres"), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {_DATABASE}")

    def stop(self) -> None:
        """Stop the cluster at once and remove its directory (only in the process that made it)."""
        if os.getpid() != self.owner_pid:
            return
        if self.started:
            self.started = False
            subprocess.run(
                [self.bindir / "pg_ctl", "--pgdata", self.data, "--mode", "immediate", "stop"],
                capture_output=True,
                user=self._user,
                cwd=self.root,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str = _DATABASE, *, schema: str | None = None) -> str:
        """A connection URL for ``database`` on this server, in ``schema`` if given."""
        url = f"postgresql://postgres@127.0.0.1:{self.port}/{database}?connect_timeout=10"
        if schema is not None:
            url += f"&options=-csearch_path%3D{schema}"
        return url

    def fresh_url(self) -> str:
        """The URL of a new, empty schema of its own (tables go where it points)."""
        import psycopg  # noqa: PLC0415

        with self._lock:
            name = f"t{os.getpid()}_{next(self._serial)}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE SCHEMA {name}")
        return self.url(schema=name)


_server: Server | None = None
_failure: str | None = None
_guard = threading.Lock()


def server() -> Server:
    """The session's server, started on first use.

    Skips the calling test when PostgreSQL cannot be had here; with ``CI=true`` fails it.
    """
    global _server, _failure  # noqa: PLW0603 - one server per test session
    with _guard:
        if _server is None and _failure is None:
            try:
                _server = _started()
            except Missing as exc:
                _failure = str(exc)
        if _server is None:
            unavailable(_failure or HOW_TO_RUN)
        return _server


def unavailable(reason: str) -> NoReturn:
    """Skip the calling test for want of a server, saying why; fail it when ``CI=true``."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and no PostgreSQL server: {reason}", pytrace=False)
    pytest.skip(reason)


def start_server(*, durable: bool = False) -> Server:
    """Find (or install) PostgreSQL and start a throwaway cluster, stopped at exit.

    Raises:
        Missing: there is no PostgreSQL here and it cannot be installed.
    """
    bindir = find_bindir()
    if bindir is None:
        install()
        bindir = find_bindir()
        if bindir is None:
            raise Missing("PostgreSQL was installed, but initdb and pg_ctl are nowhere to be found")
    started = Server(bindir, durable=durable)
    atexit.register(started.stop)
    started.start()
    return started


def _started() -> Server:
    return start_server()


def stop() -> None:
    """Stop the session's server, if one was started (the last test is done)."""
    global _server  # noqa: PLW0603
    with _guard:
        if _server is not None:
            _server.stop()
            _server = None


def storage(*, max_size: int = 10, timeout: float = 10.0) -> PostgresStorage:
    """A :class:`PostgresStorage` on a fresh schema of the session's server."""
    from retouraanvraag.adapters.postgres import PostgresStorage  # noqa: PLC0415

    return PostgresStorage(server().fresh_url(), max_size=max_size, timeout=timeout)

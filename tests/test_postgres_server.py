"""The test server's own module: finding, installing and starting PostgreSQL for the tests.

These check ``tests/_postgres.py`` with fake installations on a fake ``PATH`` (nothing is
installed for real, nothing leaves the machine), and then the session's real server.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import psycopg
import pytest

from . import _postgres


def _tool(folder: Path, name: str, body: str = "exit 0") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
    tool.chmod(tool.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return tool


def _install(folder: Path) -> Path:
    for name in ("initdb", "pg_ctl", "postgres"):
        _tool(folder, name)
    return folder


def test_nothing_installed_is_nothing_found(tmp_path: Path) -> None:
    assert _postgres.find_bindir(str(tmp_path), search=()) is None
    _tool(tmp_path / "half", "initdb")  # initdb alone is no server
    assert _postgres.find_bindir(str(tmp_path / "half"), search=()) is None


def test_the_binaries_are_found_through_pg_config(tmp_path: Path) -> None:
    server = _install(tmp_path / "pgsql" / "bin")
    _tool(tmp_path / "path", "pg_config", f"echo {server}")
    assert _postgres.find_bindir(str(tmp_path / "path"), search=()) == server


def test_the_newest_distribution_version_is_taken(tmp_path: Path) -> None:
    for version in ("9.6", "15", "13"):
        _install(tmp_path / "lib" / version / "bin")
    pattern = (str(tmp_path / "lib" / "*" / "bin"),)
    assert _postgres.find_bindir(str(tmp_path), search=pattern) == tmp_path / "lib" / "15" / "bin"


def test_initdb_on_the_path_leads_to_its_folder(tmp_path: Path) -> None:
    server = _install(tmp_path / "real" / "bin")
    (tmp_path / "path").mkdir()
    (tmp_path / "path" / "initdb").symlink_to(server / "initdb")
    assert _postgres.find_bindir(str(tmp_path / "path"), search=()) == server


@pytest.mark.skipif(os.geteuid() == 0, reason="as root the packages would be installed")
def test_without_root_nothing_is_installed_and_the_message_says_how() -> None:
    with pytest.raises(_postgres.Missing, match="apt-get install -y postgresql"):
        _postgres.install()


@pytest.mark.skipif(os.geteuid() != 0, reason="installs only as root")
def test_as_root_the_distribution_packages_are_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = tmp_path / "calls"
    _tool(tmp_path / "bin", "apt-get", f'echo "$DEBIAN_FRONTEND $*" >> {calls}')
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    _postgres.install()
    assert calls.read_text(encoding="utf-8").splitlines() == [
        "noninteractive update -q",
        "noninteractive install -y -q --no-install-recommends postgresql",
    ]
    _tool(tmp_path / "bin", "apt-get", "echo 'E: Unable to locate package postgresql'; exit 100")
    with pytest.raises(_postgres.Missing, match="Unable to locate package") as caught:
        _postgres.install()
    assert "failed (100)" in str(caught.value)


def test_a_missing_server_is_installed_then_found(monkeypatch: pytest.MonkeyPatch) -> None:
    found: list[Path | None] = [None, Path("/opt/pg/bin")]
    installed: list[bool] = []
    started: list[Path] = []
    monkeypatch.setattr(_postgres, "find_bindir", lambda: found.pop(0))
    monkeypatch.setattr(_postgres, "install", lambda: installed.append(True))
    monkeypatch.setattr(_postgres.Server, "start", lambda self: started.append(self.bindir))
    server = _postgres.start_server()
    server.stop()
    assert (installed, started) == ([True], [Path("/opt/pg/bin")])


def test_without_a_server_a_test_skips_saying_how_and_fails_on_ci(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install"):
        _postgres.unavailable(_postgres.HOW_TO_RUN)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true and no PostgreSQL server"):
        _postgres.unavailable(_postgres.HOW_TO_RUN)


def test_the_session_server_listens_on_loopback_only_with_its_socket_in_its_folder(
    postgres_server: _postgres.Server,
) -> None:
    with psycopg.connect(postgres_server.url(), autocommit=True) as admin:
        settings: dict[str, str] = dict(
            admin.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('listen_addresses', 'unix_socket_directories', 'port')"
            ).fetchall()
        )
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(postgres_server.root),
        "port": str(postgres_server.port),
    }
    assert (postgres_server.root / f".s.PGSQL.{postgres_server.port}").is_socket()


def test_each_fresh_url_is_a_schema_of_its_own(postgres_server: _postgres.Server) -> None:
    first, second = postgres_server.fresh_url(), postgres_server.fresh_url()
    assert first != second
    for url in (first, second):
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("CREATE TABLE mine (n integer)")  # would clash in one schema
            (schema,) = connection.execute("SELECT current_schema()").fetchone() or ("",)
        assert url.endswith(f"search_path%3D{schema}")

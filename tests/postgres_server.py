"""A throwaway PostgreSQL server for the tests: initdb and pg_ctl in a temporary folder, on a unix socket
there, stopped and removed at the end.

Postgres refuses to run as root, so where the tests run as root the server runs as the `postgres` user
(setuid in the child). Without Postgres the tests that need it are skipped with the reason; with the
environment variable CI set they fail instead, so CI never passes by skipping them.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pytest

SERVER_USER = "postgres"  # the OS user that runs the server when the tests run as root
SUPERUSER = "forge"  # the server's superuser role (initdb -U)


def _binary(name: str) -> str | None:
    """A Postgres program on PATH, or in Debian's versioned folder (newest first)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return candidates[-1] if candidates else None


def missing_reason() -> str | None:
    """Why no server can be started here, or None."""
    for name in ("initdb", "pg_ctl", "postgres"):
        if _binary(name) is None:
            return f"PostgreSQL is not installed ({name} not found on PATH or in /usr/lib/postgresql/*/bin)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVER_USER)
        except KeyError:
            return f"running as root and there is no {SERVER_USER!r} user to run the server as"
    return None


class PostgresServer:
    """One server in its own temporary folder; `uri(database)` connects to it over its unix socket."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="forge-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "socket"
        self.log = self.root / "server.log"
        self.port = 5432  # only names the socket file: no TCP listener is opened
        self._as_user: tuple[int, int] | None = None
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_USER)
            self._as_user = (entry.pw_uid, entry.pw_gid)

    def _run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        def drop_root() -> None:  # runs in the child: the server never runs as root
            if self._as_user:
                os.setgid(self._as_user[1])
                os.setuid(self._as_user[0])
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return subprocess.run(list(argv), preexec_fn=drop_root, env=env, capture_output=True, text=True,
                              check=check, timeout=120, cwd=self.root)

    def start(self) -> "PostgresServer":
        """Create the cluster (the first time) and start the server; again after `halt`, on the same data."""
        if not self.data.exists():
            self._create_cluster()
        options = (f"-k {self.socket_dir} -c listen_addresses='' -p {self.port} -c fsync=off "
                   f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=100 -c timezone=UTC")
        result = self._run(_binary("pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options,
                           "-w", "-t", "60", "start", check=False)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {result.stderr.strip()} {log[-2000:]}")
        self._wait_until_ready()
        return self

    def halt(self) -> None:
        """Stop the server at once, as a crash would, keeping its data (`start` brings it back)."""
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)

    def _create_cluster(self) -> None:
        self.socket_dir.mkdir()
        if self._as_user:
            self.root.chmod(0o755)  # tempfile makes it 0700: the server user must reach its folders
            for path in (self.root, self.socket_dir):
                os.chown(path, *self._as_user)
        self._run(_binary("initdb"), "-D", str(self.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--no-instructions")
        # The superuser needs no password; every other role does (the bad-credentials tests need one).
        hba = self.data / "pg_hba.conf"
        hba.write_text(f"local all {SUPERUSER} trust\nlocal all all scram-sha-256\n")
        if self._as_user:
            os.chown(hba, *self._as_user)

    def _wait_until_ready(self) -> None:
        import psycopg

        deadline = time.time() + 60
        while True:
            try:
                with psycopg.connect(self.uri("postgres"), connect_timeout=5) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def uri(self, database: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        """A libpq URI for a database of this server, over its unix socket."""
        auth = quote(user) + (f":{quote(password)}" if password is not None else "")
        return f"postgresql://{auth}@/{quote(database)}?host={quote(str(self.socket_dir))}&port={self.port}"

    def execute(self, *statements: str, database: str = "postgres") -> None:
        """Statements run one by one, outside a transaction (CREATE DATABASE needs that)."""
        import psycopg

        with psycopg.connect(self.uri(database), autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)

    def create_database(self, name: str) -> str:
        self.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')
        return self.uri(name)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def require_postgres() -> None:
    """Skip (or, under CI, fail) a test where no server can be started."""
    reason = missing_reason()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI is set, so the Postgres tests must run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A server for the whole test session, removed at its end."""
    require_postgres()
    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()

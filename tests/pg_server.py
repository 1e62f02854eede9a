"""A throwaway PostgreSQL server for the tests (Debian's ``postgresql`` package: ``bash tools/install_postgres.sh``).

:class:`PgServer` makes a cluster in a new temporary folder (``initdb``, trust authentication, superuser
``seglib``), starts it on a free TCP port of 127.0.0.1 with its socket in that folder (``fsync=off``: nothing
to keep), waits until it accepts connections, creates a database and gives its URL
``postgresql://seglib@127.0.0.1:PORT/study``; :meth:`PgServer.stop` stops it (``pg_ctl stop -m immediate``)
and removes the folder. PostgreSQL refuses to run as root, so under root the server runs as the ``postgres``
system user the Debian package creates (or ``nobody``) through ``setpriv``; otherwise as the current user.

By hand: ``python tests/pg_server.py`` prints a URL and serves until Ctrl-C (or SIGTERM); it needs no package but
the standard library.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

USER, DATABASE = "seglib", "study"


class PgUnavailable(RuntimeError):
    """No PostgreSQL server binaries here (the message says how to install them)."""


def server_bin() -> Path:
    """The folder holding ``initdb`` and ``pg_ctl``: the newest ``/usr/lib/postgresql/*/bin``, else PATH.

    Raises:
        PgUnavailable: neither has both.
    """
    def version(p: str) -> tuple:
        return tuple(int(x) if x.isdigit() else 0 for x in Path(p).parent.name.split("."))

    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(Path(folder) / b, os.X_OK) for b in ("initdb", "pg_ctl")):
            return Path(folder)
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(os.path.realpath(initdb)).parent
    raise PgUnavailable("no PostgreSQL server (initdb, pg_ctl) found; install it with: bash tools/install_postgres.sh "
                        "(Debian package postgresql)")


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (free now; the server start retries on a clash)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """A PostgreSQL server in a temporary folder; :meth:`start` returns its URL, :meth:`stop` ends it.

    Raises (``start``):
        PgUnavailable: no server binaries.
        RuntimeError: ``initdb``, the start or ``createdb`` failed (with the server log's tail).
    """

    def __init__(self):
        self.bin = server_bin()
        self.root: Path | None = None
        self.url: str | None = None
        self.port: int | None = None
        self._as: list[str] = []

    def _run(self, *cmd, server: bool = True, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        """Run a server program (as the server's user when ``server``), failing with its output."""
        argv = [*(self._as if server else []), *map(str, cmd)]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env={**os.environ, "LC_ALL": "C"},
                           cwd=self.root or None)  # a folder the server's user can enter
        if check and p.returncode != 0:
            log = self.root / "server.log" if self.root else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stdout}{p.stderr}{tail}")
        return p

    def _user(self) -> None:
        """Run the server as ``postgres`` (or ``nobody``) when this process is root, owning the folder."""
        if os.geteuid() != 0:
            return
        for name in ("postgres", "nobody"):
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                continue
            self._as = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups", "--"]
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
            return
        raise PgUnavailable("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")

    def start(self, attempts: int = 3) -> str:
        """Create, start and wait for the server; return its URL (see the module docstring). On a failure
        everything started is stopped and removed before the error is raised."""
        self.root = Path(tempfile.mkdtemp(prefix="seglib-pg-"))  # /tmp: reachable by the server's user
        try:
            self._user()
            data = self.root / "data"
            self._run(self.bin / "initdb", "-D", data, "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
            for attempt in range(attempts):  # a port taken between free_port() and the start: another port
                self.port = free_port()
                opts = (f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.root} "
                        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=40 "
                        "-c shared_buffers=16MB")
                p = self._run(self.bin / "pg_ctl", "-D", data, "-l", self.root / "server.log", "-o", opts, "-w",
                              "-t", "60", "start", check=attempt == attempts - 1)
                if p.returncode == 0:
                    break
            self._run(self.bin / "createdb", "-h", "127.0.0.1", "-p", self.port, "-U", USER, DATABASE, server=False)
        except BaseException:
            self.stop()
            raise
        self.url = f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"
        return self.url

    def stop(self) -> None:
        """Stop the server at once (``-m immediate``: a throwaway cluster needs no clean shutdown) and remove the
        folder; a server that does not stop is killed by the pid in ``postmaster.pid``. Safe to call twice."""
        if self.root is None:
            return
        data = self.root / "data"
        if (data / "postmaster.pid").exists():
            p = self._run(self.bin / "pg_ctl", "-D", data, "-m", "immediate", "-w", "-t", "30", "stop", check=False)
            if p.returncode != 0 and (data / "postmaster.pid").exists():
                try:
                    os.kill(int((data / "postmaster.pid").read_text().split()[0]), 9)
                    time.sleep(0.5)
                except (OSError, ValueError, IndexError):
                    pass
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = self.url = None

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _serve() -> None:
    """Print a server's URL and serve until SIGINT or SIGTERM, then stop it."""
    import signal

    def end(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, end)  # also in a background job, where SIGINT starts out ignored
    signal.signal(signal.SIGTERM, end)
    with PgServer() as server:
        print(server.url, flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    _serve()

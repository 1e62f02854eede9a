"""Where a study's queue lives (``STORAGE``): a journal file in ``WORKDIR`` or an RDB URL.

None or ``"journal"`` = a JournalStorage file ``WORKDIR/optuna_journal.log`` (append-only, ``JournalFileOpenLock``):
right for one notebook on Drive and for several processes on one machine, not for two machines or two Colab
sessions on one Drive journal (Drive has no file locks between machines): :mod:`.journal_lease` refuses that.
Two sessions or machines: an RDB URL both can reach, e.g. a hosted PostgreSQL ``postgresql://user:pw@host/db``
(needs the ``psycopg2`` driver: ``pip install psycopg2-binary``). ``sqlite:///path`` works for processes on one
machine with a local disk (SQLite on Drive has locking and late-sync problems: optuna #820, #2582).
"""

from __future__ import annotations

import importlib.util
import random
import time
from pathlib import Path

import optuna

JOURNAL_NAME = "optuna_journal.log"


def journal_path(storage, workdir) -> Path | None:
    """The journal file a ``STORAGE`` value means (None: the default ``WORKDIR/optuna_journal.log``, ``"journal"`` the
    same, a path ending in ``.log``/``.journal`` itself), or None for an RDB URL or a storage object."""
    if isinstance(storage, optuna.storages.BaseStorage):
        return None
    text = "journal" if storage is None else str(storage)
    if text == "journal":
        return Path(workdir) / JOURNAL_NAME
    return Path(text).expanduser() if text.endswith((".log", ".journal")) else None


def rdb_url(text: str) -> str:
    """An RDB URL as SQLAlchemy takes it: ``postgres://`` (what some hosts print) becomes ``postgresql://``, and a
    PostgreSQL URL without a driver gets the installed one, ``psycopg2`` (``postgresql+psycopg2://``) or else ``psycopg`` 3 (SQLAlchemy 2.1 assumes psycopg 3 for a bare ``postgresql://``, 2.0 psycopg2).

    Raises:
        ImportError: a PostgreSQL URL and no driver for it (the message says ``pip install psycopg2-binary``).
    """
    if text.startswith("postgres://"):
        text = "postgresql://" + text[len("postgres://"):]
    scheme = text.split("://")[0]
    if scheme not in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        return text
    drivers = [m for m in ("psycopg2", "psycopg") if importlib.util.find_spec(m) is not None]
    if scheme == "postgresql" and drivers:
        return f"postgresql+{drivers[0]}://" + text.split("://", 1)[1]
    if scheme.partition("+")[2] in drivers:
        return text
    driver, package = ("psycopg", "'psycopg[binary]'") if scheme.endswith("+psycopg") else ("psycopg2", "psycopg2-binary")
    raise ImportError(f"STORAGE={safe_url(text)!r} is a PostgreSQL URL, which needs the {driver} driver: run "
                      f"`pip install {package}` (or `pip install seglib[postgres]`) and restart the runtime")


def _rdb_storage(url: str, attempts: int = 5) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage of ``url``; connections checked before use (``pool_pre_ping``: hosted PostgreSQL servers
    drop idle ones). Two workers starting at once on an empty database race to create Optuna's tables (one gets
    "duplicate key ... studydirection"; tests/test_study_postgres.py hit it): the loser tries again, the tables
    then exist."""
    import sqlalchemy.exc

    kwargs = {} if url.startswith("sqlite") else {"engine_kwargs": {"pool_pre_ping": True}}
    for attempt in range(attempts):
        try:
            return optuna.storages.RDBStorage(url, **kwargs)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 + random.random() * 0.3 * (attempt + 1))
    raise AssertionError("unreachable")


def safe_url(url: str) -> str:
    """``url`` without its user and password (``postgresql://u:pw@host/db`` -> ``postgresql://host/db``), to print."""
    scheme, sep, rest = str(url).partition("://")
    return scheme + sep + rest.rsplit("@", 1)[-1] if sep else str(url)


def open_storage(storage, workdir) -> tuple[optuna.storages.BaseStorage, str]:
    """``(storage object, description)`` for a ``STORAGE`` value.

    Args:
        storage: None/``"journal"`` (journal file in ``workdir``), a path ending in ``.log``/``.journal``,
            an ``sqlite:///``, ``postgresql://`` or ``mysql://`` URL, or a storage object.

    Raises:
        ValueError: anything else (the message lists the accepted forms).
        ImportError: a PostgreSQL URL without the psycopg2 driver (:func:`rdb_url`).
    """
    if isinstance(storage, optuna.storages.BaseStorage):
        return storage, type(storage).__name__
    path = journal_path(storage, workdir)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return optuna.storages.JournalStorage(backend), f"journal file {path}"
    text = str(storage)
    if "://" in text:
        url = rdb_url(text)
        return _rdb_storage(url), f"RDB {safe_url(url)}"
    raise ValueError(f"STORAGE={storage!r} is not understood; use None (journal file in WORKDIR), a .log path, "
                     "or an RDB URL such as sqlite:///study.db or postgresql://user:pw@host/db")

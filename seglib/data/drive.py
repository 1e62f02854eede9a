"""Google Drive as a data source.

* Share links and ids of a *file* (``gdrive:<id>``, ``https://drive.google.com/file/d/<id>/...``) and of a
  *folder* (``https://drive.google.com/drive/folders/<id>``) are downloaded once with gdown into the cache.
  gdown 5.x (Colab's) and 6.x both work: its exception classes are looked up, never assumed, and every
  request has a :data:`DOWNLOAD_TIMEOUT` where gdown takes one, so no network fails in seconds.
* A ``DATA`` folder on the mounted Drive is copied once to the local cache (Drive is slow for many small
  files) and the copy is reused while the folder's listing (relative names, sizes, mtimes) is unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
from pathlib import Path

from tqdm.auto import tqdm

from .io import DataError, is_junk

_DRIVE_URL = re.compile(r"drive\.google\.com/(?:file/d/|open\?id=|uc\?(?:export=download&)?id=)([\w-]{20,})")
_DRIVE_FOLDER_URL = re.compile(r"drive\.google\.com/drive/(?:u/\d+/)?folders/([\w-]{10,})")
_DRIVE_ID = re.compile(r"^(?:gdrive:)?([\w-]{25,})$")

DOWNLOAD_TIMEOUT = 20.0
"""Seconds gdown waits to connect or for the next bytes (passed where the installed gdown accepts ``timeout``)."""

_SHARE_FIX = ("Check the network, that the id is right and that it is shared 'Anyone with the link'; or put "
              "the data on your Drive and set DATA to its path under /content/drive/MyDrive/")


def drive_file_id(data: str) -> str | None:
    """The Google Drive file id in a share URL, ``gdrive:<id>`` or a bare id; None if ``data`` is none of them."""
    m = _DRIVE_URL.search(data)
    if m:
        return m.group(1)
    if data.startswith("gdrive:") or (not os.path.exists(data) and "/" not in data and "." not in data):
        m = _DRIVE_ID.match(data)
        if m:
            return m.group(1)
    return None


def drive_folder_id(data: str) -> str | None:
    """The folder id of a Drive folder share URL (``https://drive.google.com/drive/folders/<id>?usp=...``,
    also ``.../drive/u/0/folders/<id>``); None for anything else."""
    m = _DRIVE_FOLDER_URL.search(data)
    return m.group(1) if m else None


def gdown_errors(gdown) -> tuple[type[BaseException], ...]:
    """The exceptions a gdown call fails with: ``OSError`` (network, disk; requests' errors are OSErrors),
    ``RuntimeError`` (gdown 5 folder parsing) and every exception class ``gdown.exceptions`` defines in the
    installed version (5.x: ``FileURLRetrievalError``, ``FolderContentsMaximumLimitError``; 6.x:
    ``DownloadError``, ``FileURLRetrievalError``, ``DownloadCancelled``); a gdown without that module is fine."""
    found = getattr(getattr(gdown, "exceptions", None), "__dict__", {}).values()
    return (OSError, RuntimeError, *(e for e in found if isinstance(e, type) and issubclass(e, Exception)))


def _gdown(call, what: str, **kwargs):
    """``call(**kwargs)`` (a gdown function) with :data:`DOWNLOAD_TIMEOUT` where it takes one; its failures
    become a :class:`DataError` naming ``what`` and the fix."""
    import gdown

    params = inspect.signature(call).parameters
    if "timeout" in params:
        kwargs["timeout"] = DOWNLOAD_TIMEOUT
    try:
        return call(**kwargs)
    except gdown_errors(gdown) as err:
        text = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        limit = ("; gdown 5 downloads at most 50 files per folder: upgrade it (pip install -U gdown) or share "
                 "a .zip" if type(err).__name__ == "FolderContentsMaximumLimitError" else "")
        raise DataError(f"could not download {what} ({type(err).__name__}: {text}){limit}. {_SHARE_FIX}") from None


def _cached(folder: Path) -> Path | None:
    """The completed download recorded in ``folder/.complete.json``, if it is still there."""
    done = folder / ".complete.json"
    if done.exists():
        path = folder / json.loads(done.read_text())["file"]
        if path.exists():
            return path
    return None


def _fresh(folder: Path) -> Path:
    """An empty ``folder/.partial`` to download into."""
    tmp = folder / ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def download_drive(file_id: str, dest_dir: Path) -> Path:
    """Download a Google Drive file with gdown into ``dest_dir/downloads/<id>/`` once; later calls reuse it.

    Returns:
        The downloaded file.

    Raises:
        DataError: no network (fails within about :data:`DOWNLOAD_TIMEOUT` s), a wrong id or missing
            permission; the message names the id and what to check.
    """
    import gdown

    folder = Path(dest_dir) / "downloads" / file_id
    if (hit := _cached(folder)) is not None:
        return hit
    tmp = _fresh(folder)
    try:
        out = _gdown(gdown.download, f"Google Drive file {file_id}", id=file_id, output=str(tmp) + os.sep, quiet=False)
        if not out:
            raise DataError(f"gdown returned nothing for Google Drive file {file_id}. {_SHARE_FIX}")
        src = Path(out)
        os.replace(src, folder / src.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (folder / ".complete.json").write_text(json.dumps({"file": src.name}))
    return folder / src.name


def download_drive_folder(folder_id: str, dest_dir: Path) -> Path:
    """Download a shared Google Drive folder (``gdown.download_folder``) into ``dest_dir/downloads/folder-<id>/``
    once; later calls reuse it (delete that folder to fetch it again).

    Returns:
        The local folder holding the Drive folder's contents (its sub-folders kept).

    Raises:
        DataError: no network (fails within about :data:`DOWNLOAD_TIMEOUT` s), a wrong id, missing
            permission, an empty folder, or gdown 5's 50-file limit; the message names the folder id and the fix.
    """
    import gdown

    folder = Path(dest_dir) / "downloads" / f"folder-{folder_id}"
    if (hit := _cached(folder)) is not None:
        return hit
    tmp = _fresh(folder)
    try:
        what = f"Google Drive folder {folder_id}"
        files = _gdown(gdown.download_folder, what, id=folder_id, output=str(tmp), quiet=False)
        if not files or not any(p.is_file() for p in tmp.rglob("*")):
            raise DataError(f"gdown found no files in {what}. {_SHARE_FIX}")
        shutil.rmtree(folder / "data", ignore_errors=True)
        os.replace(tmp, folder / "data")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    (folder / ".complete.json").write_text(json.dumps({"file": "data"}))
    return folder / "data"


def folder_listing(folder: Path) -> dict[str, list[int]]:
    """``{relative path: [size in bytes, mtime in nanoseconds]}`` of every non-junk file below ``folder``
    (``os.stat`` only; nothing is read). Nanoseconds, not whole seconds: a file rewritten with the same size
    within the second it was written is a changed file."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not is_junk(d))
        for name in sorted(filenames):
            if not is_junk(name):
                st = os.stat(os.path.join(dirpath, name))
                rel = os.path.relpath(os.path.join(dirpath, name), folder).replace(os.sep, "/")
                out[rel] = [st.st_size, st.st_mtime_ns]
    return out


def local_copy(folder: Path, dest_dir: Path, chunk: int = 1 << 20) -> Path:
    """Copy a folder (on the mounted Drive) to ``dest_dir/drive-copies/<name>-<hash of its path>/`` with a
    progress bar, or reuse the copy while :func:`folder_listing` is unchanged.

    When the folder changed, the files whose size and mtime are unchanged are taken over from the old copy
    and only the others are read from Drive. The copy is built beside the old one and renamed into place;
    the listing it was made from is written last (``<copy>.json``), so an interrupted copy is redone.

    Returns:
        The local copy (same relative names).

    Raises:
        DataError: a file could not be read (named, with the fix); the old copy is then gone, Drive untouched.
    """
    folder = Path(folder).expanduser().absolute()
    tag = hashlib.sha1(str(folder).encode()).hexdigest()[:8]
    dest = Path(dest_dir) / "drive-copies" / f"{folder.name or 'drive'}-{tag}"
    record = dest.with_name(dest.name + ".json")
    listing = folder_listing(folder)
    old = json.loads(record.read_text()) if record.exists() else {}
    if old == listing and dest.is_dir():
        print(f"using the local copy {dest} of {folder} ({len(listing)} files, unchanged on Drive)")
        return dest
    record.unlink(missing_ok=True)
    keep = {rel for rel, v in listing.items() if old.get(rel) == v and (dest / rel).is_file()}
    tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    todo = sum(v[0] for rel, v in listing.items() if rel not in keep)
    what = f"copying {folder} to local disk" + (f" ({len(keep)} unchanged files kept)" if keep else "")
    try:
        with tqdm(total=todo, unit="B", unit_scale=True, desc=what) as bar:
            for rel in listing:
                dst = tmp / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if rel in keep:
                    os.replace(dest / rel, dst)
                    continue
                with open(folder / rel, "rb") as fin, open(dst, "wb") as fout:
                    while block := fin.read(chunk):
                        fout.write(block)
                        bar.update(len(block))
                shutil.copystat(folder / rel, dst)
    except OSError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"copying {folder} to {dest} failed at {rel} ({err}); Drive may still be syncing that "
                        "file or the local disk is full: check it and run again") from None
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)
    record.write_text(json.dumps(listing))
    return dest

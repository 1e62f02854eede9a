"""Where data comes from: resolve a ``DATA`` string to a local folder.

``DATA`` may be

* ``"synthetic"`` or ``"synthetic:<generator>"`` -- data seglib generates itself (no download);
* a local folder;
* a folder on the mounted Google Drive (``/content/drive/...``) -- copied once to the local cache and
  reused while unchanged (:func:`seglib.data.drive.local_copy`);
* a ``.zip`` file, local or on the mounted Google Drive -- extracted safely into the cache;
* a Google Drive file id, ``gdrive:<id>`` or a file share URL -- downloaded with gdown, cached, then
  extracted if it is a zip;
* a Google Drive folder share URL (``https://drive.google.com/drive/folders/<id>``) -- downloaded with
  gdown's folder download and cached (a folder holding a single ``.zip`` is extracted);
* a ``.json`` manifest ``{"source": ..., "sha256": ..., "layout": ...}`` (see ``data/manifests``).

A path under the Drive mount point mounts and verifies Drive first (:func:`seglib.runtime.ensure_drive`).
Downloads, copies and extractions are cached under :func:`cache_dir` and never overwrite user files.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from .drive import download_drive, download_drive_folder, drive_file_id, drive_folder_id, local_copy
from .io import CACHE_TAG, DataError, is_junk
from .synthetic import SYNTHETIC


def cache_dir() -> Path:
    """Cache root: ``$SEGLIB_CACHE``, else ``/content/seglib_data`` on Colab, else ``~/.cache/seglib``."""
    from ..runtime import in_colab

    env = os.environ.get("SEGLIB_CACHE")
    root = Path(env) if env else (Path("/content/seglib_data") if in_colab() else Path.home() / ".cache" / "seglib")
    return _tagged(root)


def _tagged(root: Path) -> Path:
    """``root`` created, with a ``CACHEDIR.TAG`` (so backup tools skip it and messages can tell a cached copy)."""
    root.mkdir(parents=True, exist_ok=True)
    tag = root / CACHE_TAG
    if not tag.exists():
        tag.write_text("Signature: 8a477f597d28d172789f06886806bc55\n# seglib's data cache: downloads, copies, "
                       "extractions; safe to delete\n")
    return root


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_sha256(path: Path, expected: str | None) -> None:
    """Raise :class:`DataError` if ``expected`` is given and differs from the file's SHA-256."""
    if expected:
        got = sha256_file(path)
        if got.lower() != expected.lower():
            raise DataError(
                f"{path} has sha256 {got} but {expected} was expected; the download is incomplete or the "
                "file changed. Delete it to fetch it again, or update the expected sha256"
            )


def _unsafe_member(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in p.parts


def safe_extract(zip_path: Path, dest: Path) -> Path:
    """Extract ``zip_path`` into ``dest`` (created; must not exist yet) without leaving partial output.

    Members with absolute paths, drive letters or ``..`` components are refused (zip-slip); symbolic
    links are refused; ``__MACOSX``/``.DS_Store``/``Thumbs.db`` entries are skipped. Extraction goes to
    a temporary sibling folder renamed into place when complete.

    Raises:
        DataError: an unsafe member (named), a corrupt zip, or ``dest`` already existing.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if dest.exists():
        raise DataError(f"extraction target {dest} already exists; delete it or choose another cache folder")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{zip_path} is not a readable zip file ({err}); download it again") from None
    with zf:
        for info in zf.infolist():
            if _unsafe_member(info.filename):
                raise DataError(
                    f"zip {zip_path} contains the unsafe path {info.filename!r} (absolute or with '..'); "
                    "refusing to extract. Re-create the zip with relative paths"
                )
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise DataError(f"zip {zip_path} contains the symbolic link {info.filename!r}; refusing to extract")
        tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            for info in zf.infolist():
                if any(is_junk(part) for part in PurePosixPath(info.filename).parts):
                    continue
                zf.extract(info, tmp)
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(f"zip {zip_path} is corrupt ({err}); download it again") from None
        os.replace(tmp, dest)
    return dest


def _extract_cached(zip_path: Path, sha256: str | None, root: Path) -> Path:
    check_sha256(zip_path, sha256)
    st = zip_path.stat()
    key = f"{st.st_size}-{int(st.st_mtime)}"
    dest = root / "extracted" / f"{zip_path.stem}-{key}"
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    print(f"extracting {zip_path} -> {dest}")
    return safe_extract(zip_path, dest)


def resolve_data(
    data: str | os.PathLike,
    *,
    synthetic: str | None = None,
    synthetic_kwargs: dict | None = None,
    sha256: str | None = None,
    cache: Path | None = None,
) -> Path:
    """Turn a ``DATA`` value into a local folder that a layout can read.

    Args:
        data: see the module docstring.
        synthetic: generator name used for plain ``"synthetic"`` (e.g. ``"streets"``).
        synthetic_kwargs: keyword arguments for the generator (sizes, counts, seed).
        sha256: expected SHA-256 of a zip or download (checked when given).
        cache: cache root (default :func:`cache_dir`).

    Raises:
        DataError: a path that does not exist, an unsafe or corrupt zip, a failed download (offline: within
            about :data:`seglib.data.drive.DOWNLOAD_TIMEOUT` s), a failed copy from Drive, a sha256 mismatch --
            each message names the value and the fix.
        seglib.runtime.DriveError: a path on Drive while Drive cannot be mounted (declined, not Colab).
        KeyError: an unknown synthetic generator (lists valid ones).
    """
    from ..runtime import ensure_drive, on_drive

    text = str(data).strip()
    root = _tagged(Path(cache)) if cache else cache_dir()
    if text == "synthetic" or text.startswith("synthetic:"):
        name = text.partition(":")[2] or synthetic
        if not name:
            raise DataError(f"DATA={text!r}: say which generator, one of {SYNTHETIC.names()}")
        gen: Callable[..., Path] = SYNTHETIC.get(name)
        kwargs = dict(synthetic_kwargs or {})
        tag = "-".join(f"{k}{v}" for k, v in sorted(kwargs.items())) or "default"
        return gen(root=root / "synthetic" / f"{name}-{tag}", **kwargs)
    folder_id = drive_folder_id(text)
    if folder_id:
        got = download_drive_folder(folder_id, root)
        inside = [p for p in got.iterdir() if not is_junk(p.name)]
        if len(inside) == 1 and inside[0].is_file() and zipfile.is_zipfile(inside[0]):
            return _extract_cached(inside[0], sha256, root)
        return got
    path = ensure_drive(text)  # on Drive: mount and verify first (DriveError when it cannot be mounted)
    if path.suffix.lower() == ".json" and path.is_file():
        spec = json.loads(path.read_text())
        if "source" not in spec:
            raise DataError(f"manifest {path} has no 'source' entry; see data/manifests/README.md")
        return resolve_data(spec["source"], synthetic=synthetic, synthetic_kwargs=synthetic_kwargs,
                            sha256=spec.get("sha256") or sha256, cache=root)
    if path.is_dir():
        return local_copy(path, root) if on_drive(path) else path
    if path.is_file():
        if path.suffix.lower() == ".zip":
            return _extract_cached(path, sha256, root)
        raise DataError(f"DATA={text!r} is a file but not a .zip; give a folder, a .zip or a Drive id/URL")
    file_id = drive_file_id(text)
    if file_id:
        got = download_drive(file_id, root)
        check_sha256(got, sha256)
        if zipfile.is_zipfile(got):
            return _extract_cached(got, None, root)
        raise DataError(f"the Drive file {file_id} ({got.name}) is not a zip; share the dataset as a .zip")
    raise DataError(
        f"DATA={text!r} is not an existing folder, .zip file, Google Drive id/URL or 'synthetic'; "
        "on Colab, check the path: it starts with /content/drive/MyDrive/ for a file on your Drive"
    )

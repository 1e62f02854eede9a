"""Where data comes from: resolve a ``DATA`` string to a local folder.

``DATA`` may be

* ``"synthetic"`` or ``"synthetic:<generator>"`` -- data seglib generates itself (no download);
* a local folder;
* a ``.zip`` file, local or on the mounted Google Drive -- extracted safely into the cache;
* a Google Drive file id, ``gdrive:<id>`` or a Drive share URL -- downloaded with gdown, cached, then
  extracted if it is a zip;
* a ``.json`` manifest ``{"source": ..., "sha256": ..., "layout": ...}`` (see ``data/manifests``).

Downloads and extractions are cached under :func:`cache_dir` and never overwrite user files.
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

from .io import DataError, is_junk
from .synthetic import SYNTHETIC

_DRIVE_URL = re.compile(r"drive\.google\.com/(?:file/d/|open\?id=|uc\?(?:export=download&)?id=)([\w-]{20,})")
_DRIVE_ID = re.compile(r"^(?:gdrive:)?([\w-]{25,})$")


def cache_dir() -> Path:
    """Cache root: ``$SEGLIB_CACHE``, else ``/content/seglib_data`` on Colab, else ``~/.cache/seglib``."""
    from ..runtime import in_colab

    env = os.environ.get("SEGLIB_CACHE")
    root = Path(env) if env else (Path("/content/seglib_data") if in_colab() else Path.home() / ".cache" / "seglib")
    root.mkdir(parents=True, exist_ok=True)
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


def download_drive(file_id: str, dest_dir: Path, sha256: str | None = None) -> Path:
    """Download a Google Drive file with gdown into ``dest_dir/<id>/`` once; later calls reuse it.

    Raises:
        DataError: no network, a wrong id or missing permission (the message says what to check), or a
            sha256 mismatch.
    """
    import gdown

    folder = Path(dest_dir) / "downloads" / file_id
    done = folder / ".complete.json"
    if done.exists():
        path = folder / json.loads(done.read_text())["file"]
        if path.exists():
            return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        out = gdown.download(id=file_id, output=str(tmp) + os.sep, quiet=False)
    except (OSError, gdown.exceptions.DownloadError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(
            f"could not download Google Drive file {file_id} ({type(err).__name__}: {str(err)[:200]}). Check the "
            "network, that the id is right and the file is shared 'Anyone with the link'; or copy the zip to "
            "Drive and set DATA to its path"
        ) from None
    if not out:
        shutil.rmtree(tmp, ignore_errors=True)
        raise DataError(f"gdown returned nothing for Google Drive file {file_id}; check the id and sharing")
    src = Path(out)
    path = folder / src.name
    os.replace(src, path)
    shutil.rmtree(tmp, ignore_errors=True)
    check_sha256(path, sha256)
    done.write_text(json.dumps({"file": src.name}))
    return path


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
        DataError: a path that does not exist, an unsafe or corrupt zip, a failed download, a sha256
            mismatch -- each message names the value and the fix.
        KeyError: an unknown synthetic generator (lists valid ones).
    """
    text = str(data).strip()
    root = Path(cache) if cache else cache_dir()
    if text == "synthetic" or text.startswith("synthetic:"):
        name = text.partition(":")[2] or synthetic
        if not name:
            raise DataError(f"DATA={text!r}: say which generator, one of {SYNTHETIC.names()}")
        gen: Callable[..., Path] = SYNTHETIC.get(name)
        kwargs = dict(synthetic_kwargs or {})
        tag = "-".join(f"{k}{v}" for k, v in sorted(kwargs.items())) or "default"
        return gen(root=root / "synthetic" / f"{name}-{tag}", **kwargs)
    path = Path(text).expanduser()
    if path.suffix.lower() == ".json" and path.is_file():
        spec = json.loads(path.read_text())
        if "source" not in spec:
            raise DataError(f"manifest {path} has no 'source' entry; see data/manifests/README.md")
        return resolve_data(spec["source"], synthetic=synthetic, synthetic_kwargs=synthetic_kwargs,
                            sha256=spec.get("sha256") or sha256, cache=root)
    if path.is_dir():
        return path
    if path.is_file():
        if path.suffix.lower() == ".zip":
            return _extract_cached(path, sha256, root)
        raise DataError(f"DATA={text!r} is a file but not a .zip; give a folder, a .zip or a Drive id/URL")
    file_id = drive_file_id(text)
    if file_id:
        got = download_drive(file_id, root, sha256)
        if zipfile.is_zipfile(got):
            return _extract_cached(got, None, root)
        raise DataError(f"the Drive file {file_id} ({got.name}) is not a zip; share the dataset as a .zip")
    raise DataError(
        f"DATA={text!r} is not an existing folder, .zip file, Google Drive id/URL or 'synthetic'; "
        "on Colab, check that Drive is mounted and the path starts with /content/drive/MyDrive/"
    )

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


MAX_UNPACKED_BYTES = 20 * 10**9
"""Default limit of :func:`safe_extract` on a zip's unpacked size [bytes] (20 GB); set this module constant,
or pass ``max_bytes``, to allow a larger dataset."""
MAX_COMPRESSION_RATIO = 200.0
"""Default limit of :func:`safe_extract` on unpacked size / zip file size: images and PNG masks barely compress,
so a zip that unpacks to 200 times its size is a zip bomb (set this constant, or pass ``max_ratio``, to allow it)."""
_CHUNK = 1 << 20


def _unsafe_member(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return name.startswith(("/", "\\")) or bool(re.match(r"^[A-Za-z]:", name)) or ".." in p.parts


def _size(n: float) -> str:
    """``"21.0 MB"`` or ``"20.00 GB"``."""
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _too_big(zip_path: Path, unpacked: int, zip_size: int, max_bytes: int, max_ratio: float,
             when: str) -> DataError | None:
    """The refusal for ``unpacked`` bytes out of a zip of ``zip_size`` bytes, or None within the limits."""
    if unpacked > max_bytes:
        return DataError(f"zip {zip_path} {when} {_size(unpacked)}, over the limit of {_size(max_bytes)}; refusing "
                         "to extract it. If the dataset is genuinely that large, raise seglib.data.sources."
                         "MAX_UNPACKED_BYTES (or pass max_bytes) and make sure the disk has the room")
    if unpacked > max_ratio * max(zip_size, 1):
        return DataError(f"zip {zip_path} ({_size(zip_size)}) {when} {_size(unpacked)}, "
                         f"{unpacked / max(zip_size, 1):.0f} times its size (limit {max_ratio:g}): a zip bomb? Images "
                         "barely compress; refusing to extract it. If it is genuine, raise seglib.data.sources."
                         "MAX_COMPRESSION_RATIO (or pass max_ratio)")
    return None


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, done: int, refuse) -> int:
    """Stream one member to ``target`` counting bytes: raises :class:`DataError` once it writes more than its
    header declares or ``refuse(done + written)`` (a :func:`_too_big` partial) says the total is over a limit.
    Returns the bytes written."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with zf.open(info) as src, open(target, "wb") as dst:
        while block := src.read(_CHUNK):
            written += len(block)
            if written > info.file_size:
                raise DataError(f"zip member {info.filename!r} unpacks to more than the {info.file_size} bytes its "
                                "header declares; the zip is corrupt or crafted, refusing it")
            if err := refuse(done + written):
                raise err
            dst.write(block)
    return written


def safe_extract(zip_path: Path, dest: Path, max_bytes: int | None = None, max_ratio: float | None = None) -> Path:
    """Extract ``zip_path`` into ``dest`` (created; must not exist yet) without leaving partial output.

    Members with absolute paths, drive letters or ``..`` components are refused (zip-slip); symbolic
    links are refused; ``__MACOSX``/``.DS_Store``/``Thumbs.db`` entries are skipped. A zip bomb is refused:
    the unpacked size its directory declares must stay within ``max_bytes`` and ``max_ratio`` x the zip's file
    size, checked before anything is written, and the bytes actually written are counted against the same
    limits (and each member against its declared size) while extracting, in case the headers lie. Extraction
    goes to a temporary sibling folder renamed into place when complete.

    Args:
        zip_path: the zip; dest: the folder to create.
        max_bytes: unpacked-size limit [bytes]; None: :data:`MAX_UNPACKED_BYTES` (20 GB).
        max_ratio: unpacked size / zip file size limit; None: :data:`MAX_COMPRESSION_RATIO` (200).

    Raises:
        DataError: an unsafe member (named), a zip over a limit (sizes, limit and how to raise it), a corrupt
            zip, or ``dest`` already existing.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    max_bytes = MAX_UNPACKED_BYTES if max_bytes is None else int(max_bytes)
    max_ratio = MAX_COMPRESSION_RATIO if max_ratio is None else float(max_ratio)
    if dest.exists():
        raise DataError(f"extraction target {dest} already exists; delete it or choose another cache folder")
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataError(f"{zip_path} is not a readable zip file ({err}); download it again") from None
    zip_size = zip_path.stat().st_size
    with zf:
        for info in zf.infolist():
            if _unsafe_member(info.filename):
                raise DataError(
                    f"zip {zip_path} contains the unsafe path {info.filename!r} (absolute or with '..'); "
                    "refusing to extract. Re-create the zip with relative paths"
                )
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                raise DataError(f"zip {zip_path} contains the symbolic link {info.filename!r}; refusing to extract")
        members = [i for i in zf.infolist() if not any(is_junk(part) for part in PurePosixPath(i.filename).parts)]
        refusal = _too_big(zip_path, sum(i.file_size for i in members), zip_size, max_bytes, max_ratio,
                           "declares an unpacked size of")
        if refusal:
            raise refusal
        tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        total = 0
        try:
            for info in members:
                target = tmp.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                total += _copy_member(zf, info, target, total, lambda n: _too_big(
                    zip_path, n, zip_size, max_bytes, max_ratio, "unpacks (more than its headers declare) to"))
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DataError(f"zip {zip_path} is corrupt ({err}); download it again") from None
        except DataError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
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

"""Google Drive as a data source: gdown 5 and 6, Drive folder share URLs, offline failures within 30 s, and a
DATA folder on the (test double's) mounted Drive copied once to the local cache."""

import os
import sys
import threading
import time
import types
import zipfile

import pytest
import requests
from test_data import jetcar

from seglib.data.drive import DOWNLOAD_TIMEOUT, drive_file_id, drive_folder_id, gdown_errors
from seglib.data.io import DataError
from seglib.data.layouts import load_splits
from seglib.data.sources import resolve_data
from seglib.runtime import DriveError

FILE_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"
FOLDER_ID = "1ZXEhzbLRLU1giKKRJkjm8N04cO_JoYE2"


def within(seconds, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a daemon thread; fails the test if it runs past ``seconds``. Returns
    ``(exception raised or None, seconds taken)``."""
    out = {}

    def target():
        try:
            fn(*args, **kwargs)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            out["err"] = err

    t0 = time.monotonic()
    th = threading.Thread(target=target, daemon=True)
    th.start()
    th.join(seconds)
    assert not th.is_alive(), f"{fn.__name__} still running after {seconds} s (it must fail fast offline)"
    return out.get("err"), time.monotonic() - t0


def fake_gdown(monkeypatch, exceptions: dict, **functions):
    """Install a ``gdown`` module with the given ``gdown.exceptions`` classes and functions."""
    mod = types.ModuleType("gdown")
    mod.exceptions = types.ModuleType("gdown.exceptions")
    for name, cls in exceptions.items():
        setattr(mod.exceptions, name, cls)
    for name, fn in functions.items():
        setattr(mod, name, fn)
    monkeypatch.setitem(sys.modules, "gdown", mod)
    monkeypatch.setitem(sys.modules, "gdown.exceptions", mod.exceptions)
    return mod


def test_share_urls_parse():
    for url in (f"https://drive.google.com/drive/folders/{FOLDER_ID}?usp=sharing",
                f"https://drive.google.com/drive/u/0/folders/{FOLDER_ID}", f"drive.google.com/drive/folders/{FOLDER_ID}"):
        assert drive_folder_id(url) == FOLDER_ID and drive_file_id(url) is None
    assert drive_folder_id(f"https://drive.google.com/file/d/{FILE_ID}/view") is None
    assert drive_folder_id(FILE_ID) is None and drive_folder_id("/content/drive/MyDrive/folders/x") is None


def test_gdown_5_without_download_error(monkeypatch, tmp_path):
    """gdown 5.2 (Colab's) has no ``DownloadError``: its failures still become a DataError naming the id and the fix."""

    class FileURLRetrievalError(Exception):
        pass

    calls = []

    def download(url=None, output=None, quiet=False, proxy=None, speed=None, use_cookies=True, verify=True,
                 id=None, fuzzy=False, resume=False, format=None, user_agent=None, log_messages=None):
        calls.append(id)
        if id == FILE_ID:
            raise requests.exceptions.ConnectionError("Max retries exceeded (NameResolutionError)")
        raise FileURLRetrievalError("Failed to retrieve file url:\n\n\tCannot retrieve the public link of the file.")

    gd = fake_gdown(monkeypatch, {"FileURLRetrievalError": FileURLRetrievalError}, download=download)
    assert not hasattr(gd.exceptions, "DownloadError") and FileURLRetrievalError in gdown_errors(gd)
    with pytest.raises(DataError, match=f"could not download Google Drive file {FILE_ID} \\(ConnectionError: "
                                        "Max retries.*shared 'Anyone with the link'"):
        resolve_data(f"gdrive:{FILE_ID}", cache=tmp_path)
    other = FILE_ID[::-1]
    with pytest.raises(DataError, match=f"file {other} \\(FileURLRetrievalError: Failed to retrieve file url:\\)"):
        resolve_data(f"https://drive.google.com/file/d/{other}/view", cache=tmp_path)
    assert calls == [FILE_ID, other]  # called without timeout=, which gdown 5 does not take
    assert gdown_errors(types.ModuleType("gdown")) == (OSError, RuntimeError)  # no gdown.exceptions at all
    assert not any((tmp_path / "downloads").rglob("*.zip"))


def test_gdown_5_folder_limit_names_the_fix(monkeypatch, tmp_path):
    class FolderContentsMaximumLimitError(Exception):
        pass

    def download_folder(url=None, id=None, output=None, quiet=False, **_):
        raise FolderContentsMaximumLimitError("The gdrive folder with url: ... has more than 50 files")

    fake_gdown(monkeypatch, {"FolderContentsMaximumLimitError": FolderContentsMaximumLimitError},
               download_folder=download_folder)
    with pytest.raises(DataError, match=f"folder {FOLDER_ID} .*at most 50 files per folder: upgrade it"):
        resolve_data(f"https://drive.google.com/drive/folders/{FOLDER_ID}", cache=tmp_path)


@pytest.mark.parametrize("data", [f"gdrive:{FILE_ID}", f"https://drive.google.com/drive/folders/{FOLDER_ID}?usp=sharing"])
def test_offline_drive_download_fails_within_30_s(tmp_path, data):
    err, took = within(30, resolve_data, data, cache=tmp_path)
    assert isinstance(err, DataError) and took < 30, (err, took)
    what = f"Google Drive file {FILE_ID}" if data.startswith("gdrive:") else f"Google Drive folder {FOLDER_ID}"
    assert str(err).startswith(f"could not download {what} (") and "'Anyone with the link'" in str(err)
    assert not any(p.is_file() for p in (tmp_path / "downloads").rglob("*"))


def test_drive_folder_url_downloads_once_through_gdown_folder_download(monkeypatch, tmp_path):
    src = jetcar(tmp_path / "shared" / "JetCar")
    calls = []

    def download_folder(url=None, id=None, output=None, quiet=False, timeout=None, **_):
        """gdown 6's folder download, copying the "shared" folder (output without a trailing separator = the folder)."""
        calls.append((id, timeout))
        files = []
        for p in sorted(src.rglob("*")):
            if p.is_file():
                dst = os.path.join(output, p.relative_to(src))
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                files.append(dst)
                with open(p, "rb") as fin, open(dst, "wb") as fout:
                    fout.write(fin.read())
        return files

    import gdown

    monkeypatch.setattr(gdown, "download_folder", download_folder)
    url = f"https://drive.google.com/drive/folders/{FOLDER_ID}?usp=sharing"
    root = resolve_data(url, cache=tmp_path / "cache")
    assert root == resolve_data(url, cache=tmp_path / "cache") == tmp_path / "cache" / "downloads" / f"folder-{FOLDER_ID}" / "data"
    assert calls == [(FOLDER_ID, DOWNLOAD_TIMEOUT)]  # downloaded once, with a timeout
    name, splits = load_splits(root)
    assert name == "jetcar" and len(splits["train"]) == 3 and splits["train"][0].mask.is_file()

    # a shared folder holding one .zip is extracted
    src = tmp_path / "zipped"
    src.mkdir()
    with zipfile.ZipFile(src / "JetCar.zip", "w") as zf:
        for p in sorted((tmp_path / "shared" / "JetCar").rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(tmp_path / "shared"))
    other = FOLDER_ID[::-1]
    root = resolve_data(f"https://drive.google.com/drive/folders/{other}", cache=tmp_path / "cache")
    assert "extracted" in root.parts and load_splits(root)[0] == "jetcar"


@pytest.fixture
def fake_drive(tmp_path, monkeypatch):
    """The ``google.colab`` test double's Drive, mountable in this process (SEGLIB_ENV=colab)."""
    from colab_double.control import FakeDrive

    fd = FakeDrive(tmp_path / "fake")
    for k, v in fd.env().items():
        if k != "PYTHONPATH":
            monkeypatch.setenv(k, v)
    yield fd
    fd.close()


def test_data_folder_on_drive_is_copied_once_and_again_when_it_changes(fake_drive, tmp_path, capsys):
    data = jetcar(fake_drive.mydrive / "JetCar")
    on_drive = fake_drive.mountpoint / "MyDrive" / "JetCar"
    assert not os.path.ismount(fake_drive.mountpoint)
    cache = tmp_path / "cache"
    copy = resolve_data(str(on_drive), cache=cache)  # mounts Drive first
    assert os.path.ismount(fake_drive.mountpoint) and cache in copy.parents and "drive-copies" in copy.parts
    assert "copying " in capsys.readouterr().err  # the progress bar
    assert load_splits(copy)[0] == "jetcar"
    kept, same = (copy / "DataSet" / "Img" / "Train" / f"Img_00{i}.jpg" for i in (0, 1))
    ino, ino_same = kept.stat().st_ino, same.stat().st_ino

    assert resolve_data(str(on_drive), cache=cache) == copy  # unchanged: reused, nothing copied
    assert "using the local copy" in capsys.readouterr().out and kept.stat().st_ino == ino

    (data / "DataSet" / "Img" / "Train" / "Img_000.jpg").rename(data / "DataSet" / "Img" / "Train" / "Img_009.jpg")
    (data / "DataSet" / "Mask" / "Train" / "Mask_000.png").rename(data / "DataSet" / "Mask" / "Train" / "Mask_009.png")
    (data / "DataSet" / "Mask" / "Val" / "Mask_001.png").write_bytes((data / "DataSet" / "Mask" / "Val" /
                                                                     "Mask_000.png").read_bytes())
    assert resolve_data(str(on_drive), cache=cache) == copy  # changed: copied again, unchanged files kept
    assert "(8 unchanged files kept)" in capsys.readouterr().err  # 11 files: 1 renamed pair, 1 rewritten
    _, splits = load_splits(copy)
    assert [s.name for s in splits["train"]] == ["Img_001", "Img_002", "Img_009"] and not kept.exists()
    assert (copy / "DataSet" / "Mask" / "Val" / "Mask_001.png").read_bytes() == (data / "DataSet" / "Mask" / "Val" /
                                                                                "Mask_001.png").read_bytes()
    assert same.stat().st_ino == ino_same  # taken over from the old copy, not read from Drive again
    assert not list(copy.parent.glob("*.partial-*"))


def test_drive_path_without_drive_stops_and_creates_nothing(tmp_path, monkeypatch):
    mount = tmp_path / "content" / "drive"
    monkeypatch.setenv("SEGLIB_DRIVE_MOUNT", str(mount))
    with pytest.raises(DriveError, match="MyDrive/JetCar is on Google Drive, but Drive is not mounted"):
        resolve_data(str(mount / "MyDrive" / "JetCar"), cache=tmp_path / "cache")
    assert not mount.exists() and not (tmp_path / "cache" / "drive-copies").exists()

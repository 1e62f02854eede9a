"""``google.colab.drive`` for tests: binds a folder as Google Drive at the mount point, as Colab's does.

Set by the test (a notebook kernel inherits it):

``COLAB_DOUBLE_DRIVE``
    the folder that holds "the cloud": the Drive's contents, ``MyDrive/`` inside (created). Required.
``COLAB_DOUBLE_MOUNT``
    ``ok`` (default); ``decline``: raise ``MessageError('Error: credential propagation was unsuccessful')``
    as Colab does when the user refuses access; ``slow:<seconds>``: mount after that delay, or raise
    ``ValueError('mount failed: timeout ...')`` after ``timeout_ms`` when the delay is longer (as Colab does).
``COLAB_DOUBLE_LOG``
    optional file: one JSON line per mount ``{"event", "pid", "mountpoint", "mode"}`` (the test finds the
    kernel to kill there).

As Colab, it refuses a mount point that already holds files (so a program that wrote under an unmounted
``/content/drive`` fails here too), and says so when Drive is already mounted. The mount is real where the
process may mount (root): ``mount --bind`` of the cloud folder (``os.path.ismount`` is then true when the cloud
folder is on another file system, e.g. a tmpfs the test mounted). Where it is not, or the bind is not visible to
``os.path.ismount`` (same file system), ``os.path.ismount`` -- the single function seglib verifies a mount
with -- is patched in this process to report the mount point as mounted; without a bind the mount point is a
symbolic link to the cloud folder. ``mode`` in the log says which: ``bind``, ``bind+patched``, ``symlink+patched``.
"""

from __future__ import annotations

import json
import os
import posixpath
import subprocess
import time

from ._message import MessageError

_PATCHED: set[str] = set()
_real_ismount = posixpath.ismount


def _ismount(path) -> bool:
    p = os.path.abspath(os.fspath(path))
    return p in _PATCHED or _real_ismount(p)


def _log(event: str, mountpoint: str, mode: str) -> None:
    log = os.environ.get("COLAB_DOUBLE_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"event": event, "pid": os.getpid(), "mountpoint": mountpoint, "mode": mode}) + "\n")


def mount(mountpoint: str, force_remount: bool = False, timeout_ms: int = 120000, readonly: bool = False) -> None:
    """Mount "Google Drive" (the folder ``$COLAB_DOUBLE_DRIVE``) at ``mountpoint``; see the module docstring.

    Raises:
        MessageError: ``COLAB_DOUBLE_MOUNT=decline`` (access refused).
        ValueError: the mount point is a file or holds files; a slow mount past ``timeout_ms``;
            ``$COLAB_DOUBLE_DRIVE`` not set.
    """
    mp = os.path.abspath(mountpoint)
    if _ismount(mp) and not force_remount:
        print(f"Drive already mounted at {mp}; to attempt to forcibly remount, call "
              f'drive.mount("{mp}", force_remount=True).')
        return
    mode = os.environ.get("COLAB_DOUBLE_MOUNT", "ok")
    if mode == "decline":
        raise MessageError("Error: credential propagation was unsuccessful")
    if mode.startswith("slow:"):
        delay = float(mode.split(":", 1)[1])
        time.sleep(min(delay, timeout_ms / 1000))
        if delay * 1000 > timeout_ms:
            raise ValueError("mount failed: timeout during initial read of root folder")
    if os.path.isfile(mp) or os.path.islink(mp):
        raise ValueError("Mountpoint must not be a file or a link")
    if os.path.isdir(mp) and os.listdir(mp):
        raise ValueError("Mountpoint must not already contain files")
    cloud = os.environ.get("COLAB_DOUBLE_DRIVE")
    if not cloud:
        raise ValueError("the google.colab test double needs COLAB_DOUBLE_DRIVE (the folder that plays Drive)")
    os.makedirs(os.path.join(cloud, "MyDrive"), exist_ok=True)
    os.makedirs(mp, exist_ok=True)
    try:
        done = subprocess.run(["mount", "--bind", cloud, mp], capture_output=True).returncode == 0
    except OSError:  # no mount command
        done = False
    if done and _real_ismount(mp):
        how = "bind"
    else:
        if not done:
            os.rmdir(mp)
            os.symlink(cloud, mp)
        _PATCHED.add(mp)
        posixpath.ismount = os.path.ismount = _ismount
        how = "bind+patched" if done else "symlink+patched"
    _log("mount", mp, how)
    print(f"Mounted at {mp}")


def unmount(mountpoint: str) -> None:
    """Undo :func:`mount` at ``mountpoint`` (from any process: ``umount`` a bind, remove a symbolic link, drop
    the patch of this process); the cloud folder keeps its contents, as Drive does. No-op when not mounted."""
    mp = os.path.abspath(mountpoint)
    _PATCHED.discard(mp)
    if os.path.islink(mp):
        os.unlink(mp)
    elif os.path.exists("/proc/self/mountinfo"):
        with open("/proc/self/mountinfo") as f:
            if any(line.split()[4] == mp for line in f):
                subprocess.run(["umount", "--lazy", mp], check=True)


def flush_and_unmount(timeout_ms: int = 24 * 60 * 60 * 1000) -> None:
    """Unmount what this process mounted (Colab's ``drive.flush_and_unmount``)."""
    for line in open(os.environ["COLAB_DOUBLE_LOG"]) if os.environ.get("COLAB_DOUBLE_LOG") else []:
        unmount(json.loads(line)["mountpoint"])
    for mp in list(_PATCHED):
        unmount(mp)

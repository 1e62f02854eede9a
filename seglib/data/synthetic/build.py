"""Write a generated dataset once, atomically: the one mechanism behind every synthetic generator."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path


def is_complete(root: Path, params: dict, marker: str = ".complete.json") -> bool:
    """True if ``root`` holds a finished dataset generated with ``params`` (``root/marker`` records them);
    False if ``root`` is absent or an empty folder.

    Raises:
        FileExistsError: ``root`` is anything else -- a file, another dataset, a dataset made with other
            parameters, a folder with other content. Nothing is touched.
    """
    if not root.exists():
        return False
    fix = "choose another folder or delete it yourself"
    if not root.is_dir():
        raise FileExistsError(f"{root} exists and is not a folder; {fix}")
    path = root / marker
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if old == params:
            return True
        raise FileExistsError(f"{root} holds a dataset generated with other parameters {old}, not {params}; "
                              f"{fix} to regenerate")
    if any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not a complete {params.get('generator', 'generated')} "
                              f"dataset; {fix}")
    return False


def build_once(root, params: dict, write: Callable[[Path], None], marker: str = ".complete.json") -> Path:
    """Generate a dataset into ``root`` unless it is already there, and return ``root`` as a Path.

    ``write(folder)`` fills a fresh temporary sibling folder; ``folder/marker`` then records ``params`` and
    the folder is renamed to ``root`` in one step, so ``root`` is either absent, empty or complete, even if
    the process is killed. A second call with the same ``params`` returns at once; if another process
    finishes the same dataset first, its copy is kept.

    Raises:
        FileExistsError: see :func:`is_complete` (nothing is deleted or changed).
    """
    root = Path(root)
    if is_complete(root, params, marker):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir()
        write(tmp)
        (tmp / marker).parent.mkdir(parents=True, exist_ok=True)
        (tmp / marker).write_text(json.dumps(params, indent=1))
        try:
            os.replace(tmp, root)  # atomic; also replaces an empty folder on POSIX
        except OSError:
            if is_complete(root, params, marker):  # another process finished first
                return root
            root.rmdir()  # only an empty folder gets here (Windows cannot rename onto it)
            os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root

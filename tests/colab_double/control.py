"""The test side of the ``google.colab`` double: a fake Drive (a tmpfs where this process may mount one, so
``os.path.ismount`` is true for real), the environment a notebook kernel needs, unmounting, and the pid of the
kernel that mounted (to kill it as a disconnect does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DOUBLE = Path(__file__).resolve().parent
if str(DOUBLE) not in sys.path:
    sys.path.insert(0, str(DOUBLE))

from google.colab import drive  # noqa: E402  (the double)

#: IPython start-up code of a kernel under the double: ``%load_ext tensorboard`` gives a ``%tensorboard`` that
#: prints its arguments instead of starting a TensorBoard server that would outlive the test's kernels.
TENSORBOARD_MAGIC = """
import tensorboard


def _load_tensorboard_double(ipython):
    ipython.register_magic_function(lambda line: print("%tensorboard", line), magic_kind="line", magic_name="tensorboard")


tensorboard.load_ipython_extension = _load_tensorboard_double
"""


@dataclass
class FakeDrive:
    """A Drive stand-in below ``root``: ``cloud`` (Drive's contents, a tmpfs when mountable), ``mountpoint``
    (where ``drive.mount`` binds it), ``local`` (the Colab VM's fast local folder), ``log`` (mount events)."""

    root: Path

    def __post_init__(self):
        self.cloud, self.mountpoint = self.root / "cloud", self.root / "content" / "drive"
        self.local, self.log = self.root / "content" / "seglib_local", self.root / "mounts.log"
        self.cloud.mkdir(parents=True, exist_ok=True)
        self.tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2g", "seglib-test-drive", str(self.cloud)],
                                    capture_output=True).returncode == 0

    @property
    def mydrive(self) -> Path:
        """``MyDrive`` as the cloud holds it (readable whether mounted or not)."""
        return self.cloud / "MyDrive"

    def env(self, mount: str = "ok") -> dict[str, str]:
        """Environment of a Colab process under the double: ``SEGLIB_ENV=colab``, the double on ``PYTHONPATH``,
        the IPython start-up of :data:`TENSORBOARD_MAGIC`, the mount point, local root and cloud folder, and the
        mount behaviour (``ok``, ``decline``, ``slow:<s>``)."""
        path = os.pathsep.join([str(DOUBLE), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        startup = self.root / "ipython" / "profile_default" / "startup"
        startup.mkdir(parents=True, exist_ok=True)
        (startup / "00-colab-tensorboard.py").write_text(TENSORBOARD_MAGIC)
        return {"SEGLIB_ENV": "colab", "IPYTHONDIR": str(self.root / "ipython"), "PYTHONPATH": path, "SEGLIB_DRIVE_MOUNT": str(self.mountpoint),
                "SEGLIB_COLAB_LOCAL": str(self.local), "COLAB_DOUBLE_DRIVE": str(self.cloud),
                "COLAB_DOUBLE_MOUNT": mount, "COLAB_DOUBLE_LOG": str(self.log)}

    def events(self) -> list[dict]:
        """The mount events so far (``{"event", "pid", "mountpoint", "mode"}``)."""
        return [json.loads(x) for x in self.log.read_text().splitlines()] if self.log.exists() else []

    def unmount(self) -> None:
        """Unmount Drive (as a new VM has it: not mounted); the cloud keeps its contents."""
        drive.unmount(str(self.mountpoint))

    def close(self) -> None:
        """Unmount Drive and the cloud tmpfs."""
        try:
            self.unmount()
        finally:
            if self.tmpfs:
                subprocess.run(["umount", "--lazy", str(self.cloud)], check=False)

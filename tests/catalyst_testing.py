"""Shared by the ``test_catalyst_*`` modules: Catalyst must be importable, loudly.

``make test`` (and so CI) installs ``requirements-catalyst.txt``; a missing Catalyst there is a broken
install, so the modules fail at collection with the install recipe. Only an explicit
``SEGLIB_SKIP_CATALYST_TESTS=1`` turns that into a skip (for a venv made without the optional engine).
"""

import os

import pytest

from seglib.integrations.catalyst_compat import CatalystMissing, require_catalyst


def catalyst_or_fail() -> None:
    """Import Catalyst or fail the calling test module (skip only with ``SEGLIB_SKIP_CATALYST_TESTS=1``)."""
    try:
        require_catalyst()
    except CatalystMissing as err:
        if os.environ.get("SEGLIB_SKIP_CATALYST_TESTS") == "1":
            pytest.skip(f"SEGLIB_SKIP_CATALYST_TESTS=1 and {err}", allow_module_level=True)
        pytest.fail(f"{err}\n`make test` installs it; set SEGLIB_SKIP_CATALYST_TESTS=1 to skip the Catalyst tests "
                    "on purpose", pytrace=False)

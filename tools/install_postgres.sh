#!/usr/bin/env bash
# A PostgreSQL server for the study test over a real database (tests/test_study_postgres.py starts a throwaway one
# with tests/pg_server.py), from Debian's package. Does nothing when initdb and pg_ctl are there (on PATH or under
# /usr/lib/postgresql/*/bin). Needs root or sudo and apt-get; otherwise says what to install and exits 0 (the test
# then skips, except on CI where it fails). The package's own cluster service is not needed by the test.
set -euo pipefail
have_server() {
    if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then return 0; fi
    local bin
    for bin in /usr/lib/postgresql/*/bin; do
        if [ -x "$bin/initdb" ] && [ -x "$bin/pg_ctl" ]; then return 0; fi
    done
    return 1
}
if have_server; then
    exit 0
fi
source "$(dirname "$0")/apt_install.sh"
apt_install install_postgres.sh "tests/test_study_postgres.py" postgresql || exit 0
have_server || { echo "install_postgres.sh: postgresql installed but no initdb/pg_ctl found" >&2; exit 1; }
ls -d /usr/lib/postgresql/*/bin

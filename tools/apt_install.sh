# Sourced by tools/install_*.sh: apt_install WHO WHAT PACKAGE... installs Debian packages as root or with
# passwordless sudo; without apt-get, root or sudo it says what to install and returns 1 (the caller exits 0: the
# tests that need the packages then skip, except on CI where they fail).
apt_install() {
    local who="$1" what="$2"
    shift 2
    if ! command -v apt-get >/dev/null; then
        echo "$who: no apt-get here; install $* yourself for $what" >&2
        return 1
    fi
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
            echo "$who: not root and no sudo; run: sudo apt-get install $*" >&2
            return 1
        fi
    fi
    echo "installing $* (Debian packages) for $what"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}

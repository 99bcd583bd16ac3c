#!/usr/bin/env bash
# Creates .venv with a Python >= 3.12 and installs vidsr into it (editable).
# Sourced by demo.sh and test.sh; safe to run again (it only adds what is missing).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VIDSR_VENV:-$ROOT/.venv}"

is_312() { "$@" -c 'import sys; sys.exit(sys.version_info < (3, 12))' >/dev/null 2>&1; }

find_python() {
    local cand
    for cand in python3.14 python3.13 python3.12 python3 python; do
        if command -v "$cand" >/dev/null 2>&1 && is_312 "$cand"; then
            command -v "$cand"; return 0
        fi
    done
    # pyenv installs versions whose shims refuse to run unless selected: ask pyenv directly.
    if command -v pyenv >/dev/null 2>&1; then
        local version
        for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9]|[2-9][0-9])' | sort -rV); do
            cand="$(pyenv root)/versions/$version/bin/python3"
            if [ -x "$cand" ] && is_312 "$cand"; then echo "$cand"; return 0; fi
        done
    fi
    return 1
}

if [ ! -x "$VENV/bin/python" ] || ! is_312 "$VENV/bin/python"; then
    PY="$(find_python)" || { echo "vidsr setup: needs Python 3.12 or newer; none found" >&2; exit 1; }
    echo "vidsr setup: creating $VENV with $PY" >&2
    rm -rf "$VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
EXTRAS="${VIDSR_EXTRAS:-}"
# Reinstall only when the project's requirements or the extras asked for changed.
STAMP="$VENV/.vidsr-install-stamp"
WANT="$(sha256sum < "$ROOT/pyproject.toml" | cut -d" " -f1) $EXTRAS"
if [ "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]; then
    # (setuptools warns about editable installs in general; not useful here.)
    PYTHONWARNINGS=ignore "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e "$ROOT${EXTRAS:+[$EXTRAS]}"
    echo "$WANT" > "$STAMP"
fi

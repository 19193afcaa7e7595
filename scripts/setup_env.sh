#!/usr/bin/env bash
# Creates .venv with the pinned TFX 1.21 stack. Idempotent: a stamp keyed on the lock files
# makes a second call a no-op. On hosts older than glibc 2.38 / GCC 13 libstdc++ (Debian 12),
# ml-metadata and tensorflow-data-validation wheels are re-tagged and the interpreter runs
# through a private Debian 13 C runtime (see ../shared/docs/platform.md).
# Every precondition is checked before anything is deleted or downloaded; a failure is one line
# on stderr that names what is missing and the override (PYTHON=, VENV=, COLDSTART_NO_RUNTIME=1,
# COLDSTART_FORCE_RUNTIME=1, COLDSTART_DEBIAN_MIRROR=URI).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
case $VENV in /*) ;; *) VENV=$PWD/$VENV ;; esac
while [ "${VENV%/}" != "$VENV" ] && [ "$VENV" != / ]; do VENV=${VENV%/}; done
LOCK=$ROOT/requirements.lock
KEY=$(cat "$LOCK" "$ROOT/setup.py" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
STAMP=$VENV/.setup-$KEY
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
NEEDS="CPython 3.11"
WHY="TFX 1.21 publishes wheels only for it"

if [ -f "$STAMP" ]; then
  exit 0
fi

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

check_venv_path() {
  # `rm -rf "$VENV"` below must only ever remove a virtual environment this script made.
  if [ -L "$VENV" ]; then
    die "VENV=$VENV is a symbolic link (to $(readlink "$VENV")); setup never rebuilds a linked environment: remove the link or set VENV= to a folder of its own"
  fi
  if [ -e "$VENV" ] && [ ! -f "$VENV/pyvenv.cfg" ] && [ -n "$(ls -A "$VENV" 2>/dev/null || echo x)" ]; then
    die "VENV=$VENV exists and is not a virtual environment (no pyvenv.cfg); setup would delete it: set VENV= to a new or empty folder"
  fi
}

python_version() {
  # "CPython 3.11", or nothing when the interpreter does not run.
  "$1" -c 'import platform, sys; sys.stdout.write(platform.python_implementation() + " %d.%d\n" % sys.version_info[:2])' 2>/dev/null || true
}

find_python() {
  local version candidate
  if [ -n "${PYTHON:-}" ]; then
    command -v "$PYTHON" >/dev/null 2>&1 || die "PYTHON=$PYTHON not found; the stack needs $NEEDS ($WHY): set PYTHON=/path/to/python3.11"
    version=$(python_version "$PYTHON")
    [ -n "$version" ] || die "PYTHON=$PYTHON does not run; the stack needs $NEEDS ($WHY): set PYTHON=/path/to/python3.11"
    [ "$version" = "$NEEDS" ] || die "PYTHON=$PYTHON is $version; the stack needs $NEEDS ($WHY): set PYTHON=/path/to/python3.11"
  else
    for candidate in python3.11 python3; do
      if command -v "$candidate" >/dev/null 2>&1 && [ "$(python_version "$candidate")" = "$NEEDS" ]; then
        PYTHON=$candidate
        break
      fi
    done
    [ -n "${PYTHON:-}" ] || die "no python3.11 found on PATH (python3 is $(python_version python3 | grep . || echo absent)); the stack needs $NEEDS ($WHY): install it or set PYTHON=/path/to/python3.11"
  fi
  "$PYTHON" -c 'import venv, ensurepip; ensurepip.version()' >/dev/null 2>&1 \
    || die "PYTHON=$PYTHON has no working venv/ensurepip module (Debian: apt-get install python3.11-venv): install it or set PYTHON= to another python3.11"
}

check_pins() {
  grep -q '^pip==' "$LOCK" && grep -q '^wheel==' "$LOCK" \
    || die "$LOCK pins no pip or wheel version (pip==X and wheel==Y lines): add them"
}

needs_private_runtime() {
  # Returns 0 when the host C runtime is too old for the manylinux_2_39 wheels.
  [ "${COLDSTART_FORCE_RUNTIME:-}" = 1 ] && return 0
  [ "${COLDSTART_NO_RUNTIME:-}" = 1 ] && return 1
  local glibc ldconfig stdcxx
  glibc=$("$PYTHON" -c 'import platform; print(platform.libc_ver()[1])')
  [ -n "$glibc" ] || die "PYTHON=$PYTHON finds no glibc (platform.libc_ver() is empty); the TFX 1.21 wheels need glibc: set COLDSTART_NO_RUNTIME=1 to try without the private runtime"
  if "$PYTHON" -c "import sys; sys.exit(0 if tuple(map(int, '$glibc'.split('.'))) < (2, 38) else 1)"; then
    return 0
  fi
  ldconfig=$(command -v ldconfig || echo /sbin/ldconfig)
  [ -x "$ldconfig" ] || die "no ldconfig to find the host libstdc++: set COLDSTART_NO_RUNTIME=1 (libstdc++ of GCC 13 or newer) or COLDSTART_FORCE_RUNTIME=1"
  stdcxx=$("$ldconfig" -p | awk '/libstdc\+\+\.so\.6 .*x86-64/{print $NF; exit}')
  [ -n "$stdcxx" ] && ! grep -q CXXABI_1.3.15 "$stdcxx"
}

debian_mirror() {
  # The host's Debian mirror (the URI of its bookworm suite), from apt's own source lists.
  local SOURCES PARTS uri
  if [ -n "${COLDSTART_DEBIAN_MIRROR:-}" ]; then
    echo "$COLDSTART_DEBIAN_MIRROR"
    return
  fi
  eval "$(apt-config shell SOURCES Dir::Etc::sourcelist/f PARTS Dir::Etc::sourceparts/d)"
  uri=$(awk '/^URIs:/{u=$2} /^Suites:/{ if ($0 ~ / bookworm( |$)/) {print u; exit} }' \
        "${PARTS:-/nonexistent}"*.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' "${SOURCES:-/nonexistent}" 2>/dev/null || true)
  fi
  echo "$uri"
}

check_runtime_tools() {
  local reason="the host C runtime is older than glibc 2.38 / GCC 13 libstdc++, so a private Debian 13 runtime is needed"
  local skip="or set COLDSTART_NO_RUNTIME=1 on a host with glibc >= 2.38 and GCC 13 libstdc++"
  [ "$(uname -m)" = x86_64 ] || die "$reason, and it exists only for x86-64 (this is $(uname -m)): use a newer host, $skip"
  local tool
  for tool in apt-get apt-config dpkg; do
    command -v "$tool" >/dev/null 2>&1 || die "$reason, which needs $tool (Debian/Ubuntu), not found: use a newer host, $skip"
  done
  [ -f "$KEYRING" ] || die "$reason, which needs the Debian archive keyring ($KEYRING, package debian-archive-keyring), not found: install it, $skip"
  MIRROR=$(debian_mirror)
  [ -n "$MIRROR" ] || die "$reason, from a Debian mirror, and apt's sources name no bookworm mirror: set COLDSTART_DEBIAN_MIRROR=http://deb.debian.org/debian (or your mirror), $skip"
}

fetch_runtime() {
  # Debian 13 libc6, libstdc++6, libgcc-s1 unpacked into $1, from the host's own mirror.
  local dest=$1 work opts
  work=$(mktemp -d)
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
  echo "deb [signed-by=$KEYRING] $MIRROR trixie main" > "$work/sources.list"
  opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
  if ! apt-get "${opts[@]}" -qq --error-on=any update || ! (cd "$work/debs" && apt-get "${opts[@]}" -qq download libc6 libstdc++6 libgcc-s1); then
    rm -rf "$work"
    die "downloading the Debian 13 runtime (libc6, libstdc++6, libgcc-s1) from $MIRROR failed (apt-get, output above): check the mirror, set COLDSTART_DEBIAN_MIRROR=URI, or set COLDSTART_NO_RUNTIME=1 on a host with glibc >= 2.38"
  fi
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$dest"; done
  rm -rf "$work"
}

retag_wheels() {
  # Wheels published only for manylinux_2_39, re-tagged so that pip accepts them here.
  local dir=$VENV/wheels
  rm -rf "$dir"; mkdir -p "$dir"
  "$VENV/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_39_x86_64 -d "$dir" \
    "$(grep -i '^ml-metadata==' "$LOCK")" "$(grep -i '^tensorflow-data-validation==' "$LOCK")" \
    || die "downloading the manylinux_2_39 wheels of ml-metadata and tensorflow-data-validation failed (pip, output above): check the package index"
  for whl in "$dir"/*manylinux_2_39*.whl; do
    "$VENV/bin/wheel" tags --platform-tag manylinux_2_17_x86_64 --remove "$whl" >/dev/null
  done
}

wrap_interpreter() {
  # The venv's python becomes a script that starts the real interpreter through the private
  # loader; sys.executable, console scripts and Beam workers all go through it.
  local real rt=$VENV/runtime/usr/lib/x86_64-linux-gnu
  real=$(readlink -f "$VENV/bin/python")
  rm -f "$VENV/bin/python" "$VENV/bin/python3" "$VENV/bin/python3."*
  cat > "$VENV/bin/python" <<WRAP
#!/bin/sh
exec "$rt/ld-linux-x86-64.so.2" --library-path "$rt" --argv0 "$VENV/bin/python" "$real" "\$@"
WRAP
  chmod +x "$VENV/bin/python"
  # Console scripts' shebangs name the interpreter pip ran as (python3 or python3.11).
  ln -s python "$VENV/bin/python3"
  ln -s python "$VENV/bin/python3.11"
}

# Preconditions (fast, nothing deleted or downloaded yet).
check_venv_path
check_pins
find_python
RUNTIME=
if needs_private_runtime; then
  check_runtime_tools
  RUNTIME=$(mktemp -d)
  chmod 755 "$RUNTIME"
  trap 'rm -rf "$RUNTIME"' EXIT
  log "host C runtime is older than the TFX 1.21 wheels need: using re-tagged wheels and a private runtime from $MIRROR"
  fetch_runtime "$RUNTIME"
fi

log "creating $VENV with $PYTHON"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV" || die "PYTHON=$PYTHON -m venv $VENV failed (output above): set PYTHON= to another python3.11"
"$VENV/bin/pip" install -q -c "$LOCK" --upgrade pip wheel \
  || die "installing the pinned pip and wheel ($(grep -E '^(pip|wheel)==' "$LOCK" | tr '\n' ' ')) failed (pip, output above): check the package index"

pip_args=(-q -c "$LOCK")
if [ -n "$RUNTIME" ]; then
  retag_wheels
  mv "$RUNTIME" "$VENV/runtime"
  pip_args+=(--find-links "$VENV/wheels")
fi

log "installing the pinned stack (a few minutes on a fresh tree)"
"$VENV/bin/pip" install "${pip_args[@]}" -e "$ROOT[dev]" \
  || die "installing the pinned stack failed (pip, output above): check the package index"

if [ -d "$VENV/runtime" ]; then
  wrap_interpreter
fi

"$VENV/bin/python" -c 'import os; os.environ["TF_USE_LEGACY_KERAS"]="1"; import tfx, ml_metadata, tensorflow_data_validation, tensorflow_recommenders, keras_tuner' \
  || die "the installed stack does not import (error above); COLDSTART_FORCE_RUNTIME=1 forces the private runtime"
rm -f "$VENV"/.setup-*
touch "$STAMP"
log "done: $(du -sh "$VENV" | cut -f1) in $VENV"

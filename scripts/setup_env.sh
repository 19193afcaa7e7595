#!/usr/bin/env bash
# Creates .venv with the pinned TFX 1.21 stack. Idempotent: a stamp keyed on the lock files
# makes a second call a no-op. On hosts older than glibc 2.38 / GCC 13 libstdc++ (Debian 12),
# ml-metadata and tensorflow-data-validation wheels are re-tagged and the interpreter runs
# through a private Debian 13 C runtime (see ../shared/docs/platform.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
LOCK=$ROOT/requirements.lock
KEY=$(cat "$LOCK" "$ROOT/setup.py" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-16)
STAMP=$VENV/.setup-$KEY

if [ -f "$STAMP" ]; then
  exit 0
fi

log() { printf '[setup] %s\n' "$*" >&2; }

needs_private_runtime() {
  # Returns 0 when the host C runtime is too old for the manylinux_2_39 wheels.
  [ "${COLDSTART_FORCE_RUNTIME:-}" = 1 ] && return 0
  [ "${COLDSTART_NO_RUNTIME:-}" = 1 ] && return 1
  local glibc
  glibc=$("$PYTHON" -c 'import platform; print(platform.libc_ver()[1])')
  if "$PYTHON" -c "import sys; v=tuple(map(int,'$glibc'.split('.'))); sys.exit(0 if v < (2, 38) else 1)"; then
    return 0
  fi
  local stdcxx
  stdcxx=$(ldconfig -p | awk '/libstdc\+\+\.so\.6 .*x86-64/{print $NF; exit}')
  [ -n "$stdcxx" ] && ! grep -q CXXABI_1.3.15 "$stdcxx"
}

fetch_runtime() {
  # Debian 13 libc6, libstdc++6, libgcc-s1 unpacked into $VENV/runtime, from the host's own mirror.
  local work uri opts
  work=$(mktemp -d)
  uri=$(awk '/^URIs:/{u=$2} /^Suites:/{ if ($0 ~ / bookworm( |$)/) {print u; exit} }' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  if [ -z "$uri" ]; then
    uri=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  fi
  if [ -z "$uri" ]; then
    log "cannot find the Debian mirror in /etc/apt sources; set COLDSTART_NO_RUNTIME=1 on a modern host"
    exit 1
  fi
  mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/debs"
  echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri trixie main" > "$work/sources.list"
  opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/nonexistent"
        -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache" -o "APT::Sandbox::User=root")
  apt-get "${opts[@]}" -qq update
  (cd "$work/debs" && apt-get "${opts[@]}" -qq download libc6 libstdc++6 libgcc-s1)
  rm -rf "$VENV/runtime"
  for deb in "$work"/debs/*.deb; do dpkg -x "$deb" "$VENV/runtime"; done
  rm -rf "$work"
}

retag_wheels() {
  # Wheels published only for manylinux_2_39, re-tagged so that pip accepts them here.
  local dir=$VENV/wheels
  rm -rf "$dir"; mkdir -p "$dir"
  "$VENV/bin/pip" download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_39_x86_64 -d "$dir" \
    "$(grep -i '^ml-metadata==' "$LOCK")" "$(grep -i '^tensorflow-data-validation==' "$LOCK")"
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
  ln -s python "$VENV/bin/python3"
}

log "creating $VENV"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip wheel

pip_args=(-q -c "$LOCK")
if needs_private_runtime; then
  log "host C runtime is older than the TFX 1.21 wheels need: using re-tagged wheels and a private runtime"
  retag_wheels
  fetch_runtime
  pip_args+=(--find-links "$VENV/wheels")
fi

log "installing the pinned stack (a few minutes on a fresh tree)"
"$VENV/bin/pip" install "${pip_args[@]}" -e "$ROOT[dev]"

if [ -d "$VENV/runtime" ]; then
  wrap_interpreter
fi

"$VENV/bin/python" -c 'import os; os.environ["TF_USE_LEGACY_KERAS"]="1"; import tfx, ml_metadata, tensorflow_data_validation, tensorflow_recommenders, keras_tuner' \
  || { log "the installed stack does not import; see the error above"; exit 1; }
rm -f "$VENV"/.setup-*
touch "$STAMP"
log "done: $(du -sh "$VENV" | cut -f1) in $VENV"

#!/usr/bin/env bash
# Install syncd on a Debian or Ubuntu host, as the shipped systemd unit expects it:
#   /opt/syncd                      a virtualenv holding syncd and its dependencies (PEP 668:
#                                   Debian refuses a system-wide pip install; a venv is the way)
#   /usr/local/bin/syncd            a link to /opt/syncd/bin/syncd (the unit's ExecStart)
#   /etc/systemd/system/syncd.service  the unit, unchanged
#   /usr/share/doc/syncd/           README.md and docs/ with its screenshots (the unit's
#                                   Documentation=), the config's JSON Schema
#   /etc/syncd/                     syncd.example.yaml, workspaces.d/, credentials/ (0700)
#   shell completion for bash, zsh and fish
#
# Usage: packaging/install.sh [--root DIR] [--wheel FILE] [--python PYTHON] [--pip-args ARGS]
#   --root DIR      stage under DIR instead of / (an image, a package, a test); the venv is made
#                   for its final place, /opt/syncd: copy DIR onto the host's /. Nothing starts
#   --wheel FILE    the syncd wheel to install (default: build one from this checkout)
#   --python PY     the Python (3.11 or later) for the venv (default: python3)
#   --pip-args ARGS more pip install arguments, e.g. "--no-index --find-links /srv/wheels"
# Run as root for /. Re-running upgrades syncd in place and keeps /etc/syncd as it is.
set -euo pipefail

ROOT=/ WHEEL="" PYTHON=python3 PIP_ARGS=""
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() { echo "install.sh: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) ROOT=${2:?--root needs a folder}; shift 2;;
    --wheel) WHEEL=${2:?--wheel needs a file}; shift 2;;
    --python) PYTHON=${2:?--python needs a program}; shift 2;;
    --pip-args) PIP_ARGS=${2-}; shift 2;;
    -h|--help) sed -n "2,18p" "$0"; exit 0;;
    *) die "unknown option $1 (see --help)";;
  esac
done
ROOT=$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)
[[ "$ROOT" == / ]] && P="" || P="$ROOT"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PYTHON is older than 3.11 (Debian 12 and Ubuntu 24.04 ship 3.11 or later)"
"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null \
  || die "$PYTHON cannot make a venv: apt-get install python3-venv"

# 1. the wheel
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
if [[ -z "$WHEEL" ]]; then
  echo "building the wheel from $SRC"
  "$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$TMP" "$SRC" \
    || die "could not build the wheel; pass --wheel FILE"
  WHEEL=$(ls "$TMP"/syncd-*.whl)
fi
[[ -f "$WHEEL" ]] || die "no wheel at $WHEEL"

# 2. the venv under /opt/syncd, and the link the unit runs
VENV="$P/opt/syncd"
echo "installing $(basename "$WHEEL") into $VENV"
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
# No .pyc yet: compiled below, so that they name the final paths (tracebacks) under --root.
# shellcheck disable=SC2086 # PIP_ARGS is split on purpose
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile $PIP_ARGS \
  --force-reinstall --no-deps "$WHEEL"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile $PIP_ARGS \
  "$WHEEL"
if [[ -n "$P" ]]; then
  # Staged: venv and pip wrote the staging path into the launchers (#!DIR/opt/syncd/bin/python),
  # the activate scripts and pyvenv.cfg; they must name /opt/syncd, where the venv will run.
  for file in "$VENV"/bin/* "$VENV/pyvenv.cfg"; do
    [[ -f "$file" && ! -L "$file" ]] && grep -qF "$VENV" "$file" 2>/dev/null || continue
    STAGED="$VENV" perl -pi -e 's/\Q$ENV{STAGED}\E/\/opt\/syncd/g' "$file"
  done
  "$VENV/bin/python" -m compileall -q -j 0 -s "$P" -p / "$VENV/lib" >/dev/null
else
  "$VENV/bin/python" -m compileall -q -j 0 "$VENV/lib" >/dev/null
fi
install -d -m 0755 "$P/usr/local/bin"
ln -sfn /opt/syncd/bin/syncd "$P/usr/local/bin/syncd"

# 3. the unit, unchanged, and the documentation it names
install -D -m 0644 "$SRC/systemd/syncd.service" "$P/etc/systemd/system/syncd.service"
install -D -m 0644 "$SRC/README.md" "$P/usr/share/doc/syncd/README.md"
install -m 0644 "$SRC/config/syncd.schema.json" "$P/usr/share/doc/syncd/syncd.schema.json"
# the pages, and the screenshots README.md shows (docs/*.png)
for page in "$SRC"/docs/*.md "$SRC"/docs/*.png; do
  [[ -f "$page" ]] || continue
  install -D -m 0644 "$page" "$P/usr/share/doc/syncd/docs/$(basename "$page")"
done
if [[ -d "$SRC/docs/examples" ]]; then
  cp -R "$SRC/docs/examples" "$P/usr/share/doc/syncd/docs/"
fi

# 4. /etc/syncd: examples beside the operator's own files, which are never overwritten
install -d -m 0755 "$P/etc/syncd" "$P/etc/syncd/workspaces.d"
install -d -m 0700 "$P/etc/syncd/credentials"
install -m 0644 "$SRC/config/syncd.example.yaml" "$P/etc/syncd/syncd.example.yaml"
for file in "$SRC"/config/workspaces.d/*.yaml; do
  install -m 0644 "$file" "$P/etc/syncd/workspaces.d/$(basename "$file").example"
done

# 5. shell completion (from the installed syncd, so it matches its commands). Through the venv's
# python, not its launcher: staged, the launcher names /opt/syncd, which is not there yet.
SYNCD=("$VENV/bin/python" -m syncd)
if syncd_out=$("${SYNCD[@]}" completion bash 2>/dev/null); then
  install -d "$P/usr/share/bash-completion/completions" "$P/usr/share/zsh/vendor-completions" \
    "$P/usr/share/fish/vendor_completions.d"
  printf '%s\n' "$syncd_out" > "$P/usr/share/bash-completion/completions/syncd"
  "${SYNCD[@]}" completion zsh > "$P/usr/share/zsh/vendor-completions/_syncd"
  "${SYNCD[@]}" completion fish > "$P/usr/share/fish/vendor_completions.d/syncd.fish"
else
  echo "install.sh: warning: the installed syncd does not run; no shell completion" >&2
fi

if [[ -z "$P" ]] && command -v systemctl >/dev/null && [[ -d /run/systemd/system ]]; then
  systemctl daemon-reload
fi
# From the installed wheel's metadata: true even where syncd's dependencies cannot load.
VERSION="syncd $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("syncd"))')"
if [[ -z "$P" ]]; then
  echo "$VERSION installed"
  echo "next:"
else
  echo "$VERSION staged under $ROOT, for / on the target host"
  echo "next:"
  echo "  0. copy it there, e.g.: tar -C $ROOT -c . | ssh HOST tar -C / -x"
  echo "     then, on that host: systemctl daemon-reload"
fi
cat <<NEXT
  1. write /etc/syncd/syncd.yaml (start from /etc/syncd/syncd.example.yaml)
  2. put the secrets in /etc/syncd/credentials/ (git-token, webhook-secret, api-token; mode 0600)
  3. syncd check-config --config /etc/syncd/syncd.yaml, then: systemctl enable --now syncd
NEXT

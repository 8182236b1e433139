#!/usr/bin/env bash
# Installs Skybridge as a systemd service. Idempotent: run it again to upgrade the binary
# and the unit; an existing config and env file are kept.
#
#   sudo scripts/install.sh [--binary PATH] [--no-restart]
#   scripts/install.sh --root DIR [--binary PATH]     lay the files out under DIR (packaging, tests)
#
# Puts in place:
#   /usr/local/bin/skybridge                   the binary (default: dist/skybridge-<this machine>)
#   /etc/systemd/system/skybridge.service      scripts/skybridge.service
#   /etc/skybridge/config.yaml                 from config.example.yaml, logs to /var/log/skybridge (kept if present)
#   /etc/skybridge/env                         provider keys, KEY=value lines (kept if present), mode 0640
#   /etc/logrotate.d/skybridge                 daily rotation of the request log, SIGHUP to reopen
#   /var/log/skybridge, /var/lib/skybridge     owned by the service user
#   /usr/local/share/doc/skybridge/            operations.md, config.example.yaml
# and the system user `skybridge`. With systemd running: daemon-reload, and a restart
# when the service was already running (an upgrade); otherwise it says how to start it.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=""
BINARY=""
RESTART=1
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="${2:?--root needs a directory}"; ROOT="$(mkdir -p "$ROOT" && cd "$ROOT" && pwd)"; shift 2 ;;
    --binary) BINARY="${2:?--binary needs a path}"; shift 2 ;;
    --no-restart) RESTART=0; shift ;;
    -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "$BINARY" ]; then
  case "$(uname -s)-$(uname -m)" in
    Linux-x86_64) BINARY=dist/skybridge-linux-x64 ;;
    Linux-aarch64) BINARY=dist/skybridge-linux-arm64 ;;
    *) echo "install.sh: no default binary for $(uname -s)-$(uname -m); pass --binary" >&2; exit 1 ;;
  esac
fi
[ -x "$BINARY" ] || { echo "install.sh: $BINARY not found or not executable (build it: scripts/build --current)" >&2; exit 1; }
if [ -z "$ROOT" ] && [ "$(id -u)" != 0 ]; then echo "install.sh: run as root (or use --root DIR)" >&2; exit 1; fi

USER_NAME=skybridge
BIN="$ROOT/usr/local/bin/skybridge"
ETC="$ROOT/etc/skybridge"
UNIT="$ROOT/etc/systemd/system/skybridge.service"
LOGDIR="$ROOT/var/log/skybridge"
STATEDIR="$ROOT/var/lib/skybridge"
DOCDIR="$ROOT/usr/local/share/doc/skybridge"
say() { echo "install.sh: $*"; }

# Ownership only on the real system (under --root the files stay the caller's).
own() { if [ -z "$ROOT" ]; then chown "$@"; fi; }

# 1. The service user.
if [ -z "$ROOT" ]; then
  if ! getent passwd "$USER_NAME" >/dev/null; then
    useradd --system --user-group --home-dir /var/lib/skybridge --no-create-home --shell /usr/sbin/nologin --comment "Skybridge LLM gateway" "$USER_NAME"
    say "created system user $USER_NAME"
  fi
else
  say "--root: the user $USER_NAME is not created and nothing is chowned"
fi

# 2. The binary: written beside the old one, then renamed over it (a running copy keeps its inode).
install -d -m 0755 "$(dirname "$BIN")"
install -m 0755 "$BINARY" "$BIN.new"
mv -f "$BIN.new" "$BIN"
say "binary  $BIN ($("$BIN" --version 2>/dev/null || echo 'version unknown'))"

# 3. Config directory, config and env file (kept when present).
install -d -m 0750 "$ETC"
own "root:$USER_NAME" "$ETC"
if [ -e "$ETC/config.yaml" ]; then
  say "config  $ETC/config.yaml kept as it is"
else
  sed 's#^  file: ./logs/requests.ndjson$#  file: /var/log/skybridge/requests.ndjson#' config.example.yaml > "$ETC/config.yaml.new"
  grep -q '^  file: /var/log/skybridge/requests.ndjson$' "$ETC/config.yaml.new" || { echo "install.sh: could not set logs.file in the sample config" >&2; exit 1; }
  chmod 0640 "$ETC/config.yaml.new"
  own "root:$USER_NAME" "$ETC/config.yaml.new"
  mv "$ETC/config.yaml.new" "$ETC/config.yaml"
  say "config  $ETC/config.yaml (from config.example.yaml)"
fi
if [ -e "$ETC/env" ]; then
  say "env     $ETC/env kept as it is"
else
  cat > "$ETC/env.new" <<'EOF'
# Environment of the skybridge service (systemd EnvironmentFile: KEY=value, one per line,
# no "export"). Provider keys go here and are referenced in config.yaml as env.NAME.
#OPENAI_API_KEY=sk-...
#ANTHROPIC_API_KEY=sk-ant-...
#GEMINI_API_KEY=...
#AZURE_API_KEY=...
# App log level on stderr (journald); overrides logs.level in config.yaml.
#SKYBRIDGE_LOG_LEVEL=info
# Upstream requests in flight at once (Bun's fetch limit; the unit sets 16384).
#BUN_CONFIG_MAX_HTTP_REQUESTS=16384
EOF
  chmod 0640 "$ETC/env.new"
  own "root:$USER_NAME" "$ETC/env.new"
  mv "$ETC/env.new" "$ETC/env"
  say "env     $ETC/env (template; add the provider keys)"
fi

# 4. Log and state directories.
install -d -m 0750 "$LOGDIR" "$STATEDIR"
own "$USER_NAME:$USER_NAME" "$LOGDIR" "$STATEDIR"

# 5. Unit, logrotate, docs.
install -D -m 0644 scripts/skybridge.service "$UNIT"
install -D -m 0644 scripts/skybridge.logrotate "$ROOT/etc/logrotate.d/skybridge"
install -d -m 0755 "$DOCDIR"
install -m 0644 docs/operations.md config.example.yaml "$DOCDIR/"
say "unit    $UNIT"

# 6. Checks: the unit, and the config with the env file's variables.
if command -v systemd-analyze >/dev/null; then
  if [ -z "$ROOT" ]; then
    systemd-analyze verify "$UNIT" && say "systemd-analyze verify: OK"
  else
    tmp="$(mktemp -d)"
    sed "s#/usr/local/bin/skybridge#$BIN#" "$UNIT" > "$tmp/skybridge.service"
    systemd-analyze verify "$tmp/skybridge.service" && say "systemd-analyze verify: OK"
    rm -rf "$tmp"
  fi
fi
if (set -a && . "$ETC/env" && set +a && "$BIN" validate --config "$ETC/config.yaml" >/dev/null); then
  say "config validates"
else
  say "WARNING: $ETC/config.yaml does not validate yet (see above); fix it before starting the service"
fi

# 7. systemd.
if [ -z "$ROOT" ] && [ -d /run/systemd/system ]; then
  systemctl daemon-reload
  if systemctl is-active --quiet skybridge; then
    if [ "$RESTART" = 1 ]; then
      systemctl restart skybridge
      say "restarted skybridge (in-flight requests were drained first)"
    else
      say "skybridge is running the old binary; restart it when convenient: systemctl restart skybridge"
    fi
  else
    say "start it: systemctl enable --now skybridge"
  fi
elif [ -z "$ROOT" ]; then
  say "systemd is not running here: unit installed, nothing started"
fi

# Shared by scripts/run and scripts/test: install what is missing on a Debian/Ubuntu machine.
# shellcheck shell=bash

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ensure_packages PKG...: installs the Debian packages that are not installed yet.
ensure_packages() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "Installing: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  fi
}

# ensure_rust: a stable Rust toolchain with rustfmt and clippy (installed with rustup if cargo is missing).
ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "Installing Rust with rustup"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c rustfmt,clippy
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

# The packages every build needs: a C compiler (bundled SQLite) and what fetching Rust needs.
BUILD_PACKAGES=(build-essential pkg-config curl ca-certificates)

# What building the desktop app (Tauri, WebKitGTK, tray) needs.
DESKTOP_BUILD_PACKAGES=(libwebkit2gtk-4.1-dev libxdo-dev libssl-dev libayatana-appindicator3-dev librsvg2-dev file)

# ensure_node: Node.js and npm, for the Tauri CLI that bundles the desktop app (Debian's, unless one is there).
ensure_node() {
  command -v npm >/dev/null 2>&1 || ensure_packages nodejs npm
}

# ensure_tauri_driver: the WebDriver bridge for the native window's tests.
ensure_tauri_driver() {
  if ! command -v tauri-driver >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/tauri-driver" ]; then
    cargo install tauri-driver --locked
  fi
}

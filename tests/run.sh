#!/usr/bin/env bash
# Every check and test hookgate has, as CI runs them (as root: the package test installs
# and purges the Debian package). Installs what it needs: cargo-fuzz, nginx, podman and
# runc (Debian packages) here; the tests install their Python tools (vendor SDKs, aiosmtpd)
# via tests/py/setup.sh and start a scratch PostgreSQL (Debian package) via tests/pg/start.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# One clean build: incremental caches would only take disk and time on a fresh clone.
export CARGO_INCREMENTAL=0

echo "== fmt";     cargo fmt --all -- --check
echo "== clippy";  cargo clippy --all-targets -- -D warnings
cargo clippy --lib --no-default-features -- -D warnings
echo "== tests";   cargo test --all-targets
echo "== the in-process suites again, on the PostgreSQL store"
HOOKGATE_TEST_STORE=postgres cargo test --test server --test delivery --test robots \
  --test apps --test email --test escalation --test streams --test webhooks --test admin
echo "== nginx in front (docs/deploy.md)"
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx >/dev/null; }
}
cargo test --test nginx -- --ignored
echo "== the Debian package: built, installed, run as its unit says, purged"
cargo test --test package -- --ignored
echo "== the container image, built from local files and run with podman"
command -v podman >/dev/null && command -v runc >/dev/null || {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc >/dev/null 2>&1 ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc >/dev/null; }
}
cargo test --test container -- --ignored
# The benches are built and smoke-run (they say "skipped" without --bench) by
# `cargo test --all-targets` above; a second, release build of everything would only cost
# CI minutes. `cargo bench --bench NAME` runs one for real.
echo "== fuzz targets"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
# A failed stable probe cached here would break later builds (see STACK notes).
rm -f fuzz/target/.rustc_info.json
RUSTC_BOOTSTRAP=1 cargo fuzz build
for t in wecom_open wechat_mp_open dingtalk_open feishu_open dingtalk_robot_open webhook_open event_parse; do
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time=5 -print_final_stats=0 2>&1 | tail -1
done
echo "== all checks passed"

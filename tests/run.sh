#!/usr/bin/env bash
# Every check and test hookgate has, as CI runs them (as root: the package test installs
# and purges the Debian package). Installs what it needs: cargo-fuzz, nginx, podman and
# runc (Debian packages) here; the tests install their Python tools (vendor SDKs, aiosmtpd)
# via tests/py/setup.sh and start a scratch PostgreSQL (Debian package) via tests/pg/start.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
# One clean build: incremental caches would only take disk and time on a fresh clone.
export CARGO_INCREMENTAL=0

# The Debian packages the --ignored tests need, installed while fmt and clippy compile (and
# before the tests' own installers take the dpkg lock).
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v podman >/dev/null || need+=(podman)
command -v runc >/dev/null || need+=(runc)
mkdir -p target
(
  [ ${#need[@]} -eq 0 ] && exit 0
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${need[@]}" || { apt-get update -qq && apt-get install -y -q "${need[@]}"; }
) > target/apt-install.log 2>&1 &
apt_install=$!

echo "== fmt";     cargo fmt --all -- --check
echo "== clippy";  cargo clippy --all-targets -- -D warnings
cargo clippy --lib --no-default-features -- -D warnings
wait "$apt_install" || { cat target/apt-install.log; echo "installing ${need[*]} failed"; exit 1; }
echo "== tests ($SECONDS s)";   cargo test --all-targets
echo "== the in-process suites again, on the PostgreSQL store ($SECONDS s)"
HOOKGATE_TEST_STORE=postgres cargo test --test server --test delivery --test robots \
  --test apps --test email --test escalation --test streams --test webhooks --test admin
echo "== nginx in front (docs/deploy.md) ($SECONDS s)"
cargo test --test nginx -- --ignored
echo "== the Debian package: built, installed, run as its unit says, purged ($SECONDS s)"
cargo test --test package -- --ignored
echo "== the container image, built from local files and run with podman ($SECONDS s)"
cargo test --test container -- --ignored
# The benches are built and smoke-run (they say "skipped" without --bench) by
# `cargo test --all-targets` above; a second, release build of everything would only cost
# CI minutes. `cargo bench --bench NAME` runs one for real.
echo "== fuzz targets ($SECONDS s)"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
# A failed stable probe cached here would break later builds (see STACK notes).
rm -f fuzz/target/.rustc_info.json
RUSTC_BOOTSTRAP=1 cargo fuzz build
for t in wecom_open wechat_mp_open dingtalk_open feishu_open dingtalk_robot_open webhook_open event_parse; do
  RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time=5 -print_final_stats=0 2>&1 | tail -1
done
echo "== all checks passed ($SECONDS s)"

#!/usr/bin/env bash
# Builds the Debian package: target/debian/hookgate_VERSION_ARCH.deb
#
#   bash packaging/build-deb.sh                  # cargo build --release, then the package
#   bash packaging/build-deb.sh --binary PATH    # package an already built binary
#   bash packaging/build-deb.sh --out DIR        # write the .deb into DIR
#   bash packaging/build-deb.sh --compress none  # faster to build (the tests); default xz
#
# Contents: /usr/bin/hookgate, the hardened unit (/lib/systemd/system/hookgate.service),
# /etc/hookgate/hookgate.toml (the documented example) and hookgate.env (its variables, to
# fill in) as conffiles, man pages, README, LICENSE and the recipes with their sample events
# under /usr/share/doc/hookgate. postinst creates the hookgate system user and
# /var/lib/hookgate (0700); purge removes the store. Needs only dpkg-deb (no fakeroot: files
# are owned by root through --root-owner-group).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
binary=""
out="$here/target/debian"
compress=xz
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --compress) compress=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--out DIR] [--compress xz|gzip|none]" >&2; exit 2 ;;
    esac
done

cd "$here"
if [ -z "$binary" ]; then
    cargo build --release --locked --bin hookgate
    binary="$here/target/release/hookgate"
fi
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(dpkg --print-architecture)
# The newest glibc symbol version the binary needs: the package's one dependency.
glibc=$(objdump -T "$binary" 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -n1)

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"
install -D -m 0755 "$binary" "$root/usr/bin/hookgate"
strip --strip-unneeded "$root/usr/bin/hookgate" 2>/dev/null || true
install -D -m 0644 packaging/hookgate.service "$root/lib/systemd/system/hookgate.service"
install -D -m 0644 config/hookgate.example.toml "$root/etc/hookgate/hookgate.toml"
install -D -m 0640 packaging/hookgate.env "$root/etc/hookgate/hookgate.env"
doc="$root/usr/share/doc/hookgate"
install -D -m 0644 README.md "$doc/README.md"
install -D -m 0644 LICENSE "$doc/copyright"
install -D -m 0644 docs/deploy.md "$doc/deploy.md"
install -D -m 0644 docs/admin-api.md "$doc/admin-api.md"
mkdir -p "$doc/examples"
cp -r config/examples/. "$doc/examples/"
install -m 0644 config/demo.env "$doc/examples/hookgate.example.demo.env"
find "$doc" -type d -exec chmod 0755 {} + ; find "$doc" -type f -exec chmod 0644 {} +
"$binary" man "$root/usr/share/man/man1" >/dev/null
gzip -9n "$root"/usr/share/man/man1/*.1

mkdir -p "$root/DEBIAN"
install -m 0755 packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm "$root/DEBIAN/"
printf '/etc/hookgate/hookgate.toml\n/etc/hookgate/hookgate.env\n' > "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: hookgate
Version: $version
Architecture: $arch
Maintainer: hookgate maintainers <hookgate@users.noreply.github.com>
Installed-Size: $size
Depends: libc6 (>= ${glibc:-2.31}), passwd
Section: net
Priority: optional
Homepage: https://github.com/hookgate/hookgate
Description: webhook callback gateway for WeCom, DingTalk, WeChat and Feishu/Lark
 hookgate answers each vendor's URL check, verifies and decrypts every callback, commits
 it durably before replying, routes it through rules in a TOML file and fans out actions:
 email, robot and app group messages, work notifications, HTTP forwarding and timers.
 One binary; the store is an embedded SQLite file (or PostgreSQL for replicas).
CONTROL

mkdir -p "$out"
deb="$out/hookgate_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$root" "$deb" >/dev/null
echo "$deb"

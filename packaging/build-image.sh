#!/usr/bin/env bash
# Builds hookgate's container image from packaging/Containerfile, with nothing pulled from a
# registry: the rootfs is assembled here from the binary, the shared libraries `ldd` names,
# this machine's CA bundle and zoneinfo, and a passwd/group entry for uid 10001.
#
#   bash packaging/build-image.sh                   # cargo build --release; tag hookgate:VERSION
#   bash packaging/build-image.sh --binary PATH     # an already built binary
#   bash packaging/build-image.sh --tag NAME        # another tag
#
# Uses podman, or docker when podman is missing ($CONTAINER_ENGINE chooses).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
binary=""
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$here/Cargo.toml" | head -n1)
tag="hookgate:$version"
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary=$2; shift 2 ;;
        --tag) tag=$2; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--tag NAME]" >&2; exit 2 ;;
    esac
done
engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$engine" ] || { echo "needs podman or docker" >&2; exit 1; }

cd "$here"
if [ -z "$binary" ]; then
    cargo build --release --locked --bin hookgate
    binary="$here/target/release/hookgate"
fi

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
root="$context/rootfs"
install -D -m 0755 "$binary" "$root/usr/bin/hookgate"
strip --strip-unneeded "$root/usr/bin/hookgate" 2>/dev/null || true
# The dynamic loader and every library it loads, at the paths the binary asks for.
ldd "$binary" | awk '/=> \// { print $3 } /^\s*\// { print $1 }' | while read -r lib; do
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$root/usr/share"
cp -r /usr/share/zoneinfo "$root/usr/share/zoneinfo"
install -D -m 0644 config/hookgate.example.toml "$root/etc/hookgate/hookgate.toml"
printf 'root:x:0:0:root:/root:/sbin/nologin\nhookgate:x:10001:10001:hookgate:/var/lib/hookgate:/sbin/nologin\n' > "$root/etc/passwd"
printf 'root:x:0:\nhookgate:x:10001:\n' > "$root/etc/group"
printf 'hosts: files dns\n' > "$root/etc/nsswitch.conf"
install -d -m 1777 "$root/tmp"
install -d -m 0700 "$context/state"
chown -R 0:0 "$root"
cp packaging/Containerfile "$context/Containerfile"
# The Docker image format: OCI's has no HEALTHCHECK.
format=()
case "$(basename "$engine")" in podman) format=(--format docker) ;; esac
"$engine" build --quiet "${format[@]}" -t "$tag" -f "$context/Containerfile" "$context" >/dev/null
echo "$tag"

#!/usr/bin/env bash
# Starts a throwaway PostgreSQL for the tests (once; later calls find it running) and prints
# its URL. Installs Debian's postgresql if missing. TLS is on with a certificate for
# 127.0.0.1 from a test CA; plain connections
# work too; ca.crt beside the data signed it. Durability is off (these databases are scratch)
# unless HOOKGATE_PG_DURABLE=1 (the benchmarks: fsync, synchronous_commit on, as deployed).
#   HOOKGATE_PG_PORT (55432)  HOOKGATE_PG_DIR (/tmp/hookgate-pg-$PORT)
set -euo pipefail
PORT=${HOOKGATE_PG_PORT:-55432}
DIR=${HOOKGATE_PG_DIR:-/tmp/hookgate-pg-$PORT}
URL="postgres://postgres@127.0.0.1:$PORT/postgres"

exec 9>"/tmp/hookgate-pg-$PORT.lock"
flock 9

pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "$(pgbin)" ]; then
  echo "installing postgresql (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q postgresql >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -q postgresql >/dev/null; }
fi
PGBIN=$(pgbin)

if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
  echo "$URL"
  exit 0
fi

# initdb refuses to run as root: as root, the cluster belongs to the postgres user.
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

mkdir -p "$DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$DIR"
if [ ! -f "$DIR/data/PG_VERSION" ]; then
  as_owner "$PGBIN/initdb" -D "$DIR/data" -A trust -U postgres --no-sync --no-instructions \
    -E UTF8 --locale=C.UTF-8 >"$DIR/initdb.log" 9>&-
  # A test CA and a server certificate it signed (webpki refuses a CA as the server's own).
  ( cd "$DIR" &&
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj /CN=hookgate-test-ca \
      -keyout ca.key -out ca.crt 2>/dev/null &&
    openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout data/server.key \
      -out server.csr 2>/dev/null &&
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' >server.ext &&
    openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 \
      -extfile server.ext -out data/server.crt 2>/dev/null )
  chmod 600 "$DIR/data/server.key"
  [ "$(id -u)" = 0 ] && chown postgres: "$DIR/data/server.key" "$DIR/data/server.crt"
fi
SCRATCH="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
[ "${HOOKGATE_PG_DURABLE:-0}" = 1 ] && SCRATCH=""
as_owner "$PGBIN/pg_ctl" -D "$DIR/data" -w -l "$DIR/log" -o "-c listen_addresses=127.0.0.1 -p $PORT \
  -k $DIR -c max_connections=600 -c ssl=on $SCRATCH" start >/dev/null 9>&-
echo "$URL"

#!/usr/bin/env bash
# Starts a throwaway MariaDB for the `sql` lookup tests (once; later calls find it running)
# and prints its URL. Installs Debian's mariadb-server if missing. Scratch data: no fsync.
#   HOOKGATE_MYSQL_PORT (53306)  HOOKGATE_MYSQL_DIR (/tmp/hookgate-mysql-$PORT)
set -euo pipefail
PORT=${HOOKGATE_MYSQL_PORT:-53306}
DIR=${HOOKGATE_MYSQL_DIR:-/tmp/hookgate-mysql-$PORT}
URL="mysql://hookgate:hookgate@127.0.0.1:$PORT/hookgate"

exec 9>"/tmp/hookgate-mysql-$PORT.lock"
flock 9

if ! command -v mariadbd >/dev/null && [ ! -x /usr/sbin/mariadbd ]; then
  echo "installing mariadb-server (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends mariadb-server >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -q --no-install-recommends mariadb-server >/dev/null; }
fi
PATH="$PATH:/usr/sbin:/usr/bin"

ready() { mariadb-admin --protocol=tcp -h 127.0.0.1 -P "$PORT" -u hookgate -phookgate ping >/dev/null 2>&1; }
if ready; then
  echo "$URL"
  exit 0
fi

mkdir -p "$DIR"
USER_OPT=()
if [ "$(id -u)" = 0 ]; then
  chown -R mysql: "$DIR"
  USER_OPT=(--user=mysql)
fi
if [ ! -d "$DIR/data/mysql" ]; then
  mariadb-install-db "${USER_OPT[@]}" --datadir="$DIR/data" --auth-root-authentication-method=normal \
    --skip-test-db >"$DIR/install.log" 2>&1
fi
# The server outlives this script (and the test process that ran it).
nohup mariadbd "${USER_OPT[@]}" --datadir="$DIR/data" --port="$PORT" --bind-address=127.0.0.1 \
  --socket="$DIR/mysqld.sock" --pid-file="$DIR/mysqld.pid" --skip-name-resolve \
  --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 --sync-binlog=0 \
  --character-set-server=utf8mb4 --collation-server=utf8mb4_unicode_ci \
  >"$DIR/server.log" 2>&1 9>&- &
for _ in $(seq 1 120); do
  if mariadb-admin --socket="$DIR/mysqld.sock" -u root ping >/dev/null 2>&1; then break; fi
  sleep 0.25
done
mariadb --socket="$DIR/mysqld.sock" -u root <<SQL
CREATE DATABASE IF NOT EXISTS hookgate CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'hookgate'@'127.0.0.1' IDENTIFIED BY 'hookgate';
GRANT ALL ON *.* TO 'hookgate'@'127.0.0.1';
SQL
ready || { cat "$DIR/server.log" >&2; exit 1; }
echo "$URL"

#!/usr/bin/env bash
# Debian's Chromium and ChromeDriver for the console test (tests/console.rs), and a small CJK
# font for its Chinese labels, installed once; later calls find them. Prints the browser's path.
set -euo pipefail
exec 9>/tmp/hookgate-chromium.lock
flock 9
packages="chromium chromium-driver fonts-wqy-microhei"
if ! [ -x /usr/bin/chromium ] || ! [ -x /usr/bin/chromedriver ] ||
   ! [ -e /usr/share/fonts/truetype/wqy/wqy-microhei.ttc ]; then
  echo "installing $packages (Debian)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q $packages >/dev/null 2>&1 ||
    { apt-get update -qq && apt-get install -y -q $packages >/dev/null; }
fi
echo /usr/bin/chromium

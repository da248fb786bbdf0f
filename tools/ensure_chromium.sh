#!/bin/sh
# The browser tests drive Debian's Chromium (/usr/bin/chromium) with Playwright; nothing is
# downloaded by the test tool itself. `make test` runs this first: on a Debian machine where
# we are root and Chromium is missing, it installs the package; otherwise it says what to do.
set -eu
CHROMIUM="${SALESBOT_CHROMIUM:-/usr/bin/chromium}"
if [ -x "$CHROMIUM" ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Debian's chromium for the browser tests (apt-get install chromium)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || {
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    }
    exit 0
fi
echo "The browser tests need Chromium at $CHROMIUM: install it (Debian/Ubuntu:" \
     "sudo apt-get install chromium) or point SALESBOT_CHROMIUM at a Chromium binary." >&2
exit 1

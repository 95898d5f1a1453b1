#!/usr/bin/env bash
# Checks the system packages nightrec needs (a JDK 17+ for Spark, redis-server, and openssl,
# which the Redis TLS test uses to make a throw-away certificate authority) and the ones its
# browser test uses (Debian's chromium and a font for it), and installs the missing ones with
# apt-get when running as root; otherwise says what to install. Only the required ones make it
# fail: without chromium the explorer's browser test skips and says why.
set -euo pipefail

java_ok() {
    command -v java >/dev/null || return 1
    local v
    v=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
    [ -n "$v" ] && [ "$v" -ge 17 ]
}

missing=()
java_ok || missing+=("openjdk-17-jre-headless")
command -v redis-server >/dev/null || missing+=("redis-server")
command -v openssl >/dev/null || missing+=("openssl")
optional=()
[ -x /usr/bin/chromium ] || optional+=("chromium")
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || optional+=("fonts-dejavu-core")
[ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    echo "system-deps: installing ${missing[*]} ${optional[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" "${optional[@]}" >/dev/null
    java_ok || { echo "system-deps: java 17+ still not found after install" >&2; exit 1; }
    exit 0
fi

if [ ${#optional[@]} -gt 0 ]; then
    echo "system-deps: ${optional[*]} missing: the explorer's browser test will skip." >&2
    echo "  Debian/Ubuntu: sudo apt-get install --no-install-recommends ${optional[*]}" >&2
fi
[ ${#missing[@]} -eq 0 ] && exit 0
echo "system-deps: missing ${missing[*]}." >&2
echo "  Debian/Ubuntu: sudo apt-get install ${missing[*]}" >&2
echo "  macOS: brew install openjdk@17 redis" >&2
echo "  (Spark 4 needs Java 17 or newer on PATH or in JAVA_HOME; tests start their own redis-server.)" >&2
exit 1

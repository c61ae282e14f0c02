#!/bin/sh
# The programs `make bench` drives besides Python: wrk (the HTTP load), Caddy and nginx
# (the reverse-proxy rows). Installs the missing ones with apt-get when it can (as root,
# or with password-less sudo); otherwise says what is missing and carries on: the bench
# then skips those rows and says so.
set -u
missing=""
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v caddy >/dev/null 2>&1 || missing="$missing caddy"
command -v nginx >/dev/null 2>&1 || missing="$missing nginx-light"
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "make bench: not installed:$missing (no apt-get here: install them to get their rows)"
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    echo "make bench: not installed:$missing (apt-get needs root: sudo apt-get install$missing)"
    exit 0
fi
echo "make bench: installing$missing with apt-get"
if ! { $sudo apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null; }; then
    echo "make bench: could not install$missing: their rows will be skipped"
fi
exit 0

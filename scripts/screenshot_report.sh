#!/usr/bin/env bash
# Screenshot an HTML report in headless Chromium, offline, to look at it before shipping a change
# to tuner/decisions/plots.py or tuner/decisions/report.py. The page must draw everything from what it embeds: the
# network is off (no CDN to fall back on), and JS gets virtual time to draw the figures.
#
#   bash scripts/screenshot_report.sh results/sample/report.html report.png [WIDTHxHEIGHT]
#
# Needs Debian's chromium (apt-get install -y chromium).
set -euo pipefail
page=${1:?usage: screenshot_report.sh REPORT.html OUT.png [WIDTHxHEIGHT]}
out=${2:?usage: screenshot_report.sh REPORT.html OUT.png [WIDTHxHEIGHT]}
size=${3:-1400x4200}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n "$browser" ]] || { echo "no chromium found: apt-get install -y chromium" >&2; exit 1; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
"$browser" --headless --no-sandbox --disable-gpu --disable-background-networking --no-first-run \
  --user-data-dir="$profile" --proxy-server="127.0.0.1:9" --proxy-bypass-list="<-loopback>" \
  --hide-scrollbars --virtual-time-budget=15000 --window-size="${size/x/,}" \
  --screenshot="$(realpath -m "$out")" "file://$(realpath "$page")" 2>/dev/null
echo "wrote $out"

#!/usr/bin/env bash
# Screenshots of the HTML report for the README, with headless Chromium (Debian: apt-get install
# chromium). Regenerate them whenever the report changes:
#   docs/screenshots.sh <campaign dir> [report.html]
# <campaign dir> is where the campaign ran (it holds results/<campaign>/); the report is built
# there with `snakemake --report` unless given.
set -euo pipefail
work=$(cd "${1:?usage: docs/screenshots.sh <campaign dir> [report.html]}" && pwd)
docs=$(cd "$(dirname "$0")" && pwd)
report=${2:-$work/report.html}
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[ -n "$browser" ] || { echo "no Chromium found: apt-get install chromium" >&2; exit 2; }
[ -f "$report" ] || (cd "$work" && snakemake --report "$report")
shot() {  # shot <url> <png> <width,height>
    "$browser" --headless=new --no-sandbox --disable-gpu --hide-scrollbars --force-device-scale-factor=1 \
        --virtual-time-budget=15000 --window-size="$3" --screenshot="$2" "$1" >/dev/null 2>&1
    echo "wrote $2"
}
shot "file://$report" "$docs/report_landing.png" 1400,1000
table=$(ls "$work"/results/*/tables/table_4_2.html | head -1)
shot "file://$table" "$docs/report_table_4_2.png" 1100,420

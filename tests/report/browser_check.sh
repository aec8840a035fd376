#!/usr/bin/env bash
# browser_check.sh: the report's HTML page in a real browser (Debian's
# chromium, headless): it loads from a file with no network, the DOM shows
# the figures and the SVG charts, data stays text (a <script> in a label is
# not run: the title is unchanged), and the screenshot is not blank (the
# line and bar colours are drawn).
#
# chromium runs with --no-sandbox (it runs as root in CI, and Bazel's
# sandbox has no user namespaces for its own) and a temporary
# --user-data-dir and HOME.
# usage: browser_check.sh <report_sample binary>
set -euo pipefail
sample=$1
tmp=$(mktemp -d "${TEST_TMPDIR:-/tmp}/report-browser-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
if ! command -v chromium >/dev/null 2>&1; then
    echo "FAIL: chromium is not installed (bash scripts/install-deps.sh installs Debian's chromium)"
    exit 1
fi
"$sample" "$tmp/report.html"
flags=(--headless --no-sandbox --disable-gpu --disable-extensions --no-first-run
    --user-data-dir="$tmp/profile" --window-size=1000,2400)
export HOME=$tmp
timeout 120 chromium "${flags[@]}" --dump-dom "file://$tmp/report.html" >"$tmp/dom.html" 2>"$tmp/chromium.log" ||
    { echo "FAIL: chromium --dump-dom failed:"; tail -20 "$tmp/chromium.log"; exit 1; }
timeout 120 chromium "${flags[@]}" --screenshot="$tmp/shot.png" "file://$tmp/report.html" >>"$tmp/chromium.log" 2>&1 ||
    { echo "FAIL: chromium --screenshot failed:"; tail -20 "$tmp/chromium.log"; exit 1; }

fail=0
want() { # want <description> <fixed string expected in the DOM>
    if grep -qF -- "$2" "$tmp/dom.html"; then echo "ok: $1"; else echo "FAIL: $1 (no '$2' in the DOM)"; fail=1; fi
}
want "title" "<title>im-task report daily 2026-03-29T00:00:00+01:00</title>"
want "messages tile" '<div class="v">4321</div>'
want "active users tile" '<div class="v">321</div>'
want "fan-out recipients tile" '<div class="v">99999</div>'
want "pushes tile" '<div class="v">1234</div>'
want "audit decisions tile" '<div class="v">4322</div>'
want "dead-lettered tile" '<div class="v">3</div>'
want "line chart" '<svg id="chart-messages"'
want "line" '<polyline class="line"'
want "pushes chart" '<svg id="chart-pushes"'
want "audit chart" '<svg id="chart-audit"'
want "23 hourly points on the DST day" '<title>23:00: '
want "the label is text" '&lt;script&gt;document.title'
if grep -q "<script" "$tmp/dom.html"; then echo "FAIL: a <script> element in the DOM"; fail=1; fi
if grep -q "pwned" <(grep -o "<title>[^<]*</title>" "$tmp/dom.html" | head -1); then
    echo "FAIL: the page title changed"; fail=1
fi
n_points=$(grep -o '<circle class="dot"' "$tmp/dom.html" | wc -l)
[ "$n_points" -eq 23 ] && echo "ok: 23 points" || { echo "FAIL: $n_points points, want 23"; fail=1; }

# The screenshot: decode the PNG (stdlib only) and count pixels of the line
# colour (#0969da) and the bar colour (#1a7f37).
python3 - "$tmp/shot.png" <<'PY' || fail=1
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, w = 8, b"", 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
        assert depth == 8 and ctype in (2, 6) and interlace == 0, "unexpected PNG format"
        bpp = 4 if ctype == 6 else 3
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
counts = {"line": 0, "bar": 0, "white": 0}
total = 0
for y in range(h):
    f = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        px = tuple(line[x:x + 3])
        total += 1
        if px == (0x09, 0x69, 0xda): counts["line"] += 1
        elif px == (0x1a, 0x7f, 0x37): counts["bar"] += 1
        elif px == (255, 255, 255): counts["white"] += 1
    prev = line
print("screenshot %dx%d: %d line pixels, %d bar pixels, %.1f%% white" %
      (w, h, counts["line"], counts["bar"], 100.0 * counts["white"] / total))
assert counts["line"] > 200, "the line chart is not drawn"
assert counts["bar"] > 2000, "the bars are not drawn"
assert counts["white"] < total, "a blank page"
print("ok: the charts are drawn")
PY
[ $fail -eq 0 ] && echo "browser check: passed" || echo "browser check: FAILED (see above)"
exit $fail

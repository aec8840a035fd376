#!/usr/bin/env bash
# demo_test.sh: the README's first command, scripts/demo.sh, run as a test so it
# cannot rot. The same path as `bash scripts/demo.sh run` (the stack is already
# up here): the four task binaries started with the demo's configurations, a
# fan-out to a group of DEMO_TEST_MEMBERS (2,000) members, its push tasks
# through the APNs/FCM doubles, a content audit, the summary. On topics and
# consumer groups of its own (IMTASK_DEMO_NS), so nothing else is disturbed.
#
# The demo checks its own summary for consistency (downlinks read back equal
# the fan-out's count, no duplicates, pushes counted by imtask-push equal the
# doubles' 200s, the dead-letter queue empty). This test checks it against an
# oracle that does not come from the code under test: the im-repo double's
# data generator (tests/doubles/imrepo/cmd/imrepo-double/data.go) recomputed
# here, which says which members are online on which gateway and which devices
# the offline ones have.
#
# Arguments: the binaries (imtask-fanout, -push, -audit, -archive, imtask-ctl,
# imtask-demo-probe), then scripts/demo.sh. Needs the local stack's addresses:
# IMTASK_KAFKA_BROKERS, IMTASK_ETCD_ENDPOINTS, IMTASK_IMREPO_ADMIN,
# IMTASK_MODERATION_ADDR, IMTASK_PUSH_ADMIN (scripts/test.sh passes them).
set -uo pipefail

for v in IMTASK_KAFKA_BROKERS IMTASK_ETCD_ENDPOINTS IMTASK_IMREPO_ADMIN IMTASK_MODERATION_ADDR IMTASK_PUSH_ADMIN; do
    if [ -z "${!v:-}" ]; then
        echo "demo_test: $v is not set: run through scripts/test.sh, or bazel test --test_env=$v (scripts/stack.sh env prints the values)" >&2
        exit 1
    fi
done

tmp=${TEST_TMPDIR:-$(mktemp -d)}
bin="$tmp/bin"
mkdir -p "$bin"
demo_sh= gen_docs= ops_doc=
for a in "$@"; do
    case $a in
        *.sh) demo_sh=$a ;;
        *.py) gen_docs=$a ;;
        *.md) ops_doc=$a ;;
        *) ln -sf "$(cd "$(dirname "$a")" && pwd)/$(basename "$a")" "$bin/$(basename "$a")" ;;
    esac
done
[ -n "$demo_sh" ] && [ -n "$gen_docs" ] && [ -n "$ops_doc" ] ||
    { echo "demo_test: expected demo.sh, gen_docs.py and operations.md among the arguments" >&2; exit 1; }

# Free ports: four for the binaries' HTTP, four (base + 10..13) for the
# demo's private im-repo double.
port=$(python3 - <<'PY'
import random, socket
for _ in range(200):
    base = random.randint(20000, 29000)
    ok = True
    for p in list(range(base, base + 4)) + list(range(base + 10, base + 14)):
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", p))
        except OSError:
            ok = False
        finally:
            s.close()
    if ok:
        print(base)
        break
PY
)
[ -n "$port" ] || { echo "demo_test: no four free ports" >&2; exit 1; }

members=${DEMO_TEST_MEMBERS:-2000}
export IMTASK_DEMO_BIN_DIR=$bin IMTASK_DEMO_DIR=$tmp/demo IMTASK_DEMO_PORT=$port
export IMTASK_DEMO_NS="test$$r$RANDOM" IMTASK_DEMO_TIMEOUT=${DEMO_TEST_TIMEOUT:-240}
cleanup() { bash "$demo_sh" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "demo_test: bash scripts/demo.sh run --members $members (namespace $IMTASK_DEMO_NS, ports $port..$((port + 3)))"
bash "$demo_sh" run --members "$members" >"$tmp/out" 2>&1
rc=$?
cat "$tmp/out"
if [ $rc -ne 0 ]; then
    for f in "$tmp"/demo/logs/*.log; do
        echo "---- last 30 lines of $(basename "$f")"
        tail -30 "$f"
    done
    echo "demo_test: scripts/demo.sh run exited $rc"
    echo "demo_test: 0 passed, 1 failed"
    exit 1
fi

# The metrics the binaries expose after the run against the metrics reference
# of docs/operations.md (type, help, labels): the demo's run is where most
# metrics have their first samples.
urls=()
for i in 0 1 2 3; do urls+=("http://127.0.0.1:$((port + i))/metrics"); done
python3 "$gen_docs" --check-scrape "$ops_doc" "${urls[@]}"
docs_rc=$?

# Every binary stops cleanly on SIGTERM (under --config=asan: no leak, no
# sanitizer report).
bash "$demo_sh" stop >/dev/null 2>&1
stopped_ok=1
for name in fanout push audit archive; do
    log="$tmp/demo/logs/$name.log"
    if ! grep -q "imtask-$name stopped (status 0)" "$log" || grep -q 'Sanitizer' "$log"; then
        echo "demo_test: imtask-$name did not stop cleanly; last lines of its log:"
        tail -20 "$log"
        stopped_ok=0
    fi
done

# The summary against the im-repo double's own data.
python3 - "$tmp/out" "$IMTASK_IMREPO_ADMIN" "$members" "$docs_rc" "$stopped_ok" <<'PY'
import json, os, re, sys, urllib.request

out = open(sys.argv[1]).read()
admin, members = sys.argv[2], int(sys.argv[3])
knobs = json.load(urllib.request.urlopen(admin + "/config", timeout=10))
ratio, gws, dmax = knobs["online_ratio"], knobs["gateways"], knobs["devices_max"]

M = (1 << 64) - 1
def fnv(s):
    h = 14695981039346656037
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & M
    return h

m = re.search(r"fan-out of (m(\d+)) to (g\d+-\S+): (\d+) members", out)
assert m, "no fan-out line in the summary"
msg_i, gid = int(m.group(2)), m.group(3)
assert int(m.group(4)) == members, m.group(0)
sender = "u%d" % (fnv("msg|%d" % msg_i) % 100000)
base = fnv("members|" + gid) % 1_000_000_000

online = {}   # gateway -> count
offline_devices = {"apns": 0, "fcm": 0}
offline = excluded = 0
for k in range(members):
    uid = "u%d" % (base + k)
    if uid == sender:
        excluded += 1
        continue
    h = fnv(uid + "|online")
    if h % 1_000_000 < ratio * 1_000_000:
        gw = "gw-%d" % ((h // 1_000_000) % gws + 1)
        online[gw] = online.get(gw, 0) + 1
        continue
    offline += 1
    hd = fnv(uid + "|devices")
    for j in range(hd % (dmax + 1)):
        offline_devices["apns" if ((hd >> 8) + j) % 2 == 0 else "fcm"] += 1

checks = []
def check(name, got, want):
    checks.append((name, got == want))
    print("%s %s: got %s, want %s" % ("ok  " if got == want else "FAIL", name, got, want))

def num(pattern):
    r = re.search(pattern, out)
    assert r, "summary line missing: " + pattern
    return [int(x) for x in r.groups()]

check("online members given a downlink", num(r"online, downlinks written:\s+(\d+)")[0], sum(online.values()))
check("offline members handed to push", num(r"offline, handed to push:\s+(\d+)")[0], offline)
check("members left out (the sender)", num(r"left out \(sender\):\s+(\d+)")[0], excluded)
for gw in sorted(set(online) | {"gw-%d" % i for i in range(1, gws + 1)}):
    r = re.search(r"\S+-%s\s+(\d+)\s+(\d+)\s+(\d+)" % re.escape(gw), out)
    got = [int(x) for x in r.groups()] if r else None
    want = online.get(gw, 0)
    check("downlinks on the topic of %s (records, users, metric)" % gw, got, [want, want, want])
check("duplicate downlinks", num(r"duplicates: (\d+)")[0], 0)
apns_ok, apns_req, fcm_ok, fcm_req = num(r"APNs double: (\d+) of (\d+) requests answered 200;\s+FCM double: (\d+) of (\d+)")
check("APNs pushes of the offline members' devices", [apns_ok, apns_req], [offline_devices["apns"]] * 2)
check("FCM pushes of the offline members' devices", [fcm_ok, fcm_req], [offline_devices["fcm"]] * 2)
check("pushes counted by imtask-push", num(r"sent \(imtask_push_sent_total\): (\d+)")[0], sum(offline_devices.values()))
check("audit decision", bool(re.search(r"content audit of m\d+: decision=BLOCK provider=generic", out)), True)
check("dead-letter queue empty", num(r"dead-letter queue since the start .*: (\d+) records")[0], 0)
check("the system left running", "everything is still running" in out, True)
check("the four binaries stop cleanly on SIGTERM (exit 0, no sanitizer report)", int(sys.argv[5]), 1)
check("metrics after the run match docs/operations.md", int(sys.argv[4]), 0)
check("archive run: the private double's 100 oldest messages", num(r"archive run: (\d+) messages archived")[0], 100)
man = re.search(r"^\s+(\S+\.manifest\.json)$", out, re.M)
mj = json.load(open(man.group(1))) if man else {}
check("archive manifest: m0..m99 in one zstd segment", [mj.get("count"), mj.get("first_id"), mj.get("last_id"), mj.get("compression")], [100, "m0", "m99", "zstd"])
rj = re.search(r"^\s+(\S+/reports/demo_report/\S+\.json)$", out, re.M)
rep_j = json.load(open(rj.group(1))) if rj else {}
seeded = num(r"500 messages of activity seeded into it from (\d+)")[0]
for ext in ("csv", "html"):
    check("report written as " + ext, bool(rj) and os.path.exists(rj.group(1)[:-4] + ext), True)
if rep_j.get("start_ms") == seeded:
    check("report: the 500 seeded messages of the previous hour", rep_j["activity"]["messages"], 500)
bad = [n for n, ok in checks if not ok]
print("demo_test: %d passed, %d failed" % (len(checks) - len(bad), len(bad)))
sys.exit(1 if bad else 0)
PY

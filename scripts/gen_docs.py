#!/usr/bin/env python3
"""gen_docs.py: the configuration and metrics references of docs/operations.md,
generated from the task binaries themselves so they cannot drift.

Configuration: each binary's `--check-config` output (every key it binds, with
its default or "not set"), for a config that names one APNs and one FCM app so
that the per-app sections show too. Metrics: every metric name compiled into
each binary (its strings), with type, help and labels from its /metrics page
(the binary started against an unreachable broker, so nothing runs) and from
any --scrape URL given (e.g. the demo's binaries after a run, where metrics
that appear only with their first sample are present too); a metric no
source shows keeps the type, help and labels its row already had.

  gen_docs.py --bin fanout=PATH ... [--scrape URL ...] [--repo-conf FILE] --write docs/operations.md
  gen_docs.py --bin fanout=PATH ... --check docs/operations.md
  gen_docs.py --check-scrape docs/operations.md URL ...

--check fails when the configuration block differs from a fresh one, when a
metric name in a binary is missing from the metrics block, or when a metric
the binaries show differs from its row. --check-scrape compares live /metrics
pages with the rows (tests/demo does, after its run). The fix is always
`bash scripts/gen-docs.sh`.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

CFG_BEGIN = "<!-- generated:config begin (bash scripts/gen-docs.sh; do not edit by hand) -->"
CFG_END = "<!-- generated:config end -->"
MET_BEGIN = "<!-- generated:metrics begin (bash scripts/gen-docs.sh; do not edit by hand) -->"
MET_END = "<!-- generated:metrics end -->"

# Sections whose name carries a variable part, and what the doc calls them.
APP = "docsapp"
PUSH_APPS_YAML = f"""apns:
  apps: [{APP}]
fcm:
  apps: [{APP}]
apns_app_{APP}:
  topics: [com.example.app]
  team_id: TEAMID
  key_id: KEYID
  key_file: /run/secrets/apns/key.p8
fcm_app_{APP}:
  app_ids: ["*"]
  credentials_file: /run/secrets/fcm/service-account.json
"""
JOB = "docsjob"
ARCHIVE_YAML = f"""schedule:
  jobs: [{JOB}]
schedule_job_{JOB}:
  cron: "@daily"
  task_type: report
"""
# Where each section is explained.
SECTION_DOCS = {
    "log": "configuration.md", "http": "configuration.md", "kafka": "configuration.md",
    "shutdown": "configuration.md", "consumer": "configuration.md", "retry": "configuration.md",
    "retry_<task_type>": "configuration.md", "imrepo": "imrepo.md", "fanout": "fanout.md",
    "push": "push.md", "apns": "push.md", "fcm": "push.md", "apns_app_<app>": "push.md",
    "fcm_app_<app>": "push.md", "audit": "audit.md", "audit_http": "audit.md",
    "audit_breaker": "audit.md", "audit_generic": "audit.md", "audit_tencent": "audit.md",
    "audit_openai": "audit.md", "schedule": "schedule.md", "schedule_job_<name>": "schedule.md",
    "schedule_params_<name>": "schedule.md", "outcomes": "report.md", "archive": "archive.md",
    "report": "report.md", "storage": "archive.md",
}
FAKE_BROKERS = "127.0.0.1:1"


def die(msg):
    sys.exit("gen_docs: " + msg)


def env_name(section, key):
    return "IMTASK_" + re.sub(r"[.\-]", "_", f"{section}_{key}").upper()


def doc_section(name):
    if name.startswith(f"apns_app_{APP}"):
        return "apns_app_<app>"
    if name.startswith(f"fcm_app_{APP}"):
        return "fcm_app_<app>"
    if name.startswith("retry_"):
        return "retry_<task_type>"
    if name == f"schedule_job_{JOB}":
        return "schedule_job_<name>"
    if name == f"schedule_params_{JOB}":
        return "schedule_params_<name>"
    return name


# ------------------------------------------------------------ configuration

def check_config(binary, name, tmp):
    path = os.path.join(tmp, f"{name}.yaml")
    with open(path, "w") as f:
        f.write({"push": PUSH_APPS_YAML, "archive": ARCHIVE_YAML}.get(name, "{}\n"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTASK_")}
    env["IMTASK_KAFKA_BROKERS"] = FAKE_BROKERS
    p = subprocess.run([binary, "--config", path, "--check-config"], env=env,
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        die(f"{binary} --check-config failed ({p.returncode}): {p.stdout}{p.stderr}")
    sections = []  # [(section, [(key, value, origin)])]
    for line in p.stdout.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if not line.startswith(" "):
            sections.append((line.rstrip(":"), []))
            continue
        body, _, origin = line.strip().rpartition("  # ")
        key, _, value = body.partition(": ")
        if not sections or not key:
            die(f"{binary}: cannot read --check-config line {line!r}")
        sections[-1][1].append((key, value, origin))
    return sections


def read_repo_defaults(path):
    """imrepo defaults from libs/repoclient/src/conf.c's option table (the
    binaries print that section's unset keys as 'not set')."""
    out = {}
    if path and os.path.exists(path):
        for m in re.finditer(r'\{"([a-z_]+)",\s*K_[A-Z]+,\s*O\([a-z_]+\),\s*"([^"]*)"', open(path).read()):
            out[m.group(1)] = m.group(2)
    return out


# Keys the generator's example config sets that are not required: what they
# default to (their binaries print "not set" when the file has no value).
OPTIONAL_SET = {
    ("apns", "apps"): "(empty: no APNs app)",
    ("fcm", "apps"): "(empty: no FCM app)",
    ("schedule", "jobs"): "(empty: no scheduler)",
    (f"apns_app_{APP}", "team_id"): "(required with token auth)",
    (f"apns_app_{APP}", "key_id"): "(required with token auth)",
    (f"apns_app_{APP}", "key_file"): "(required with token auth)",
}


def render_value(section, key, value, origin, binary):
    if origin == f"env IMTASK_KAFKA_BROKERS":
        return "(required)"
    if (section, key) in OPTIONAL_SET and origin not in ("default",):
        return OPTIONAL_SET[(section, key)]
    if origin == "not set":
        return "(none)"
    if origin != "default":  # set by the file above: keys an app must have
        return "(required)"
    v = value
    if len(v) >= 2 and v[0] == '"' and v[-1] == '"':
        v = v[1:-1].replace('\\"', '"')
    return v.replace(f"im-task-{binary}", "im-task-<binary>")


def config_block(binaries, repo_defaults):
    tmp = tempfile.mkdtemp(prefix="gen-docs-")
    order = []  # doc sections in first-seen order
    rows = {}   # doc section -> {key: {binary: default}}
    types = {}  # retry_<task_type> instances
    for name, path in binaries:
        for section, keys in check_config(path, name, tmp):
            ds = doc_section(section)
            if ds == "retry_<task_type>":
                types.setdefault(section[len("retry_"):], []).append(name)
            if ds not in rows:
                order.append(ds)
                rows[ds] = {}
            for key, value, origin in keys:
                d = render_value(section, key, value, origin, name)
                if ds == "retry_<task_type>":
                    d = "(the `retry` value)"
                if ds == "imrepo" and d == "(none)" and repo_defaults.get(key, "") != "":
                    d = repo_defaults[key]
                rows[ds].setdefault(key, {})[name] = d
    allnames = [n for n, _ in binaries]
    out = [CFG_BEGIN, ""]
    for ds in order:
        doc = SECTION_DOCS.get(ds)
        out.append(f"### `{ds}`" + (f" ([{doc}]({doc}))" if doc else ""))
        out.append("")
        if ds == "retry_<task_type>":
            out.append("One section per task type, each key overriding `retry` for that type: " +
                       ", ".join(f"`retry_{t}` ({'/'.join(sorted(set(b)))})" for t, b in sorted(types.items())) + ".")
            out.append("")
        if ds == "schedule_job_<name>":
            out.append("One section per name listed in `schedule.jobs`; `schedule_params_<name>` "
                       "holds any string params of the job, copied into its task.")
            out.append("")
        if ds.endswith("_<app>"):
            out.append("One section per name listed in `%s.apps`; `<app>` in the env name is "
                       "that name in upper case." % ds.split("_")[0])
            out.append("")
        out.append("| key | default | env | binaries |")
        out.append("|---|---|---|---|")
        for key, per in rows[ds].items():
            vals = sorted(set(per.values()))
            if len(vals) == 1:
                default = vals[0]
            else:
                default = "; ".join(f"{b}: {per[b]}" for b in allnames if b in per)
            default = "(none)" if default == "" else default
            if not default.startswith("("):
                default = "`" + default.replace("|", "\\|").replace("`", "'") + "`"
            section_env = {"apns_app_<app>": "apns_app_<APP>", "fcm_app_<app>": "fcm_app_<APP>",
                           "retry_<task_type>": "retry_<TASK_TYPE>",
                           "schedule_job_<name>": "schedule_job_<NAME>",
                           "schedule_params_<name>": "schedule_params_<NAME>"}.get(ds, ds)
            env = env_name(section_env, key)
            bins = "all" if set(per) == set(allnames) else ", ".join(b for b in allnames if b in per)
            out.append(f"| `{key}` | {default} | `{env}` | {bins} |")
        out.append("")
    out.append(CFG_END)
    return "\n".join(out)


# ------------------------------------------------------------------ metrics

def metric_names(path):
    data = open(path, "rb").read()
    return sorted({m.decode() for m in re.findall(rb"imtask_[a-z][a-z0-9_]*", data) if b"__" not in m})


def parse_metrics(text):
    """{family: {"type", "help", "labels": set}} from a Prometheus text page."""
    fams = {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, help_ = line[7:].partition(" ")
            fams.setdefault(name, {"type": "", "help": "", "labels": set()})["help"] = help_
        elif line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            fams.setdefault(name, {"type": "", "help": "", "labels": set()})["type"] = typ
        elif line and not line.startswith("#"):
            m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
            if not m:
                continue
            name = m.group(1)
            if name not in fams:
                for suf in ("_bucket", "_sum", "_count"):
                    if name.endswith(suf) and name[: -len(suf)] in fams:
                        name = name[: -len(suf)]
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or "")) - {"le"}
            fams.setdefault(name, {"type": "", "help": "", "labels": set()})["labels"] |= labels
    return fams


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scrape_idle(path, name, tmp):
    """/metrics of the binary started against an unreachable broker."""
    port = free_port()
    cfg = os.path.join(tmp, f"{name}-run.yaml")
    with open(cfg, "w") as f:
        f.write(f"kafka:\n  brokers: {FAKE_BROKERS}\nhttp:\n  listen: 127.0.0.1:{port}\nshutdown:\n  grace: 1s\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMTASK_")}
    log = open(os.path.join(tmp, f"{name}-run.log"), "w")
    p = subprocess.Popen([path, "--config", cfg], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 30
        while True:
            if p.poll() is not None:
                die(f"{path} exited ({p.returncode}) before serving /metrics; log: {log.name}")
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                if time.time() > deadline:
                    die(f"{path}: no /metrics on port {port} within 30 s")
                time.sleep(0.2)
    finally:
        p.terminate()
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def fetch(url):
    return urllib.request.urlopen(url, timeout=10).read().decode()


def metrics_rows(binaries, scrapes):
    tmp = tempfile.mkdtemp(prefix="gen-docs-")
    where = {}  # family -> [binaries]
    info = {}
    for name, path in binaries:
        for fam in metric_names(path):
            where.setdefault(fam, []).append(name)
        for fam, i in parse_metrics(scrape_idle(path, name, tmp)).items():
            merge(info, fam, i)
    for text in scrapes:
        for fam, i in parse_metrics(text).items():
            merge(info, fam, i)
    return where, info


def merge(info, fam, i):
    cur = info.setdefault(fam, {"type": "", "help": "", "labels": set()})
    cur["type"] = cur["type"] or i["type"]
    cur["help"] = cur["help"] or i["help"]
    cur["labels"] |= i["labels"]


def metric_doc(fam):
    for prefix, doc in (("imtask_fanout_", "fanout.md"), ("imtask_push_", "push.md"),
                        ("imtask_audit_", "audit.md"), ("imtask_archive_", "archive.md"),
                        ("imtask_schedule_", "archive.md"), ("imtask_report_", "archive.md")):
        if fam.startswith(prefix):
            return "[%s](%s)" % (doc, doc)
    return "[runtime.md](runtime.md)"


def metrics_block(binaries, scrapes, previous=None):
    where, info = metrics_rows(binaries, scrapes)
    # Families no source showed this time keep what the previous table knew
    # (from an earlier run with traffic); //tests/demo checks those rows
    # against a live run.
    for fam, r in (previous or {}).items():
        if fam in where and not info.get(fam, {}).get("type") and r["known"]:
            info[fam] = {"type": r["type"], "help": r["help"], "labels": set(r["labels"])}
    allnames = [n for n, _ in binaries]
    out = [MET_BEGIN, "", "| metric | type | labels | binaries | help |", "|---|---|---|---|---|"]
    for fam in sorted(where):
        i = info.get(fam, {"type": "", "help": "", "labels": set()})
        bins = "all" if set(where[fam]) == set(allnames) else ", ".join(where[fam])
        typ = i["type"] or "—"
        labels = ", ".join(sorted(i["labels"])) if i["type"] else "—"
        help_ = (i["help"] or "—").replace("|", "\\|")
        if not i["type"]:
            help_ = "— (not exposed before its first sample, and none in the runs this table was made from: see %s)" % metric_doc(fam)
        out.append(f"| `{fam}` | {typ} | {labels} | {bins} | {help_} |")
    out += ["", MET_END]
    return "\n".join(out)


def doc_metric_rows(doc):
    block = extract(doc, MET_BEGIN, MET_END)
    rows = {}
    for line in block.splitlines():
        m = re.match(r"\| `([a-z0-9_]+)` \| ([^|]+) \| ([^|]*) \| ([^|]+) \| (.*) \|$", line)
        if m:
            labels = set() if m.group(3).strip() in ("", "—") else {x.strip() for x in m.group(3).split(",")}
            rows[m.group(1)] = {"type": m.group(2).strip(), "labels": labels,
                                "known": m.group(2).strip() != "—",
                                "help": m.group(5).replace("\\|", "|").strip()}
    return rows


# --------------------------------------------------------------------- doc

def extract(doc, begin, end):
    if begin not in doc or end not in doc:
        die(f"markers {begin!r} / {end!r} missing from the document")
    return doc[doc.index(begin): doc.index(end) + len(end)]


def replace(doc, begin, end, block):
    return doc[: doc.index(begin)] + block + doc[doc.index(end) + len(end):]


def mask_imrepo_defaults(block):
    """The imrepo rows' default column (it comes from conf.c, which a check
    without --repo-conf cannot see)."""
    out, inside = [], False
    for line in block.splitlines():
        if line.startswith("### "):
            inside = line.startswith("### `imrepo`")
        if inside and line.startswith("| `"):
            cells = line.split(" | ")
            cells[1] = "*"
            line = " | ".join(cells)
        out.append(line)
    return "\n".join(out)


def check_live(rows, fams, source):
    problems = []
    for fam, i in sorted(fams.items()):
        if not fam.startswith("imtask_"):
            continue
        r = rows.get(fam)
        if r is None:
            problems.append(f"{fam} ({source}) is not in the metrics reference")
            continue
        if not r["known"]:
            problems.append(f"{fam}: the reference has no type/help/labels but {source} shows them")
            continue
        if i["type"] and r["type"] != i["type"]:
            problems.append(f"{fam}: type {i['type']} in {source}, {r['type']} in the reference")
        if i["help"] and r["help"] != i["help"]:
            problems.append(f"{fam}: help {i['help']!r} in {source}, {r['help']!r} in the reference")
        if not i["labels"] <= r["labels"]:
            problems.append(f"{fam}: labels {sorted(i['labels'])} in {source}, {sorted(r['labels'])} in the reference")
    return problems


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", default=[], help="NAME=PATH of a task binary")
    ap.add_argument("--scrape", action="append", default=[], help="a /metrics URL to learn from")
    ap.add_argument("--repo-conf", help="libs/repoclient/src/conf.c (imrepo defaults)")
    ap.add_argument("--write")
    ap.add_argument("--check")
    ap.add_argument("--check-scrape", nargs="+", metavar=("DOC", "URL"))
    a = ap.parse_args()
    binaries = []
    for b in a.bin:
        name, _, path = b.partition("=")
        if not name or not os.access(path, os.X_OK):
            die(f"--bin {b!r}: expected NAME=PATH of an executable")
        binaries.append((name, path))

    if a.check_scrape:
        doc, urls = a.check_scrape[0], a.check_scrape[1:]
        rows = doc_metric_rows(open(doc).read())
        problems = []
        for u in urls:
            problems += check_live(rows, parse_metrics(fetch(u)), u)
        report(problems, doc, f"{len(urls)} live /metrics pages")
        return

    if not binaries:
        die("give the binaries with --bin NAME=PATH")
    if a.write:
        doc = open(a.write).read()
        doc = replace(doc, CFG_BEGIN, CFG_END, config_block(binaries, read_repo_defaults(a.repo_conf)))
        doc = replace(doc, MET_BEGIN, MET_END,
                      metrics_block(binaries, [fetch(u) for u in a.scrape], doc_metric_rows(doc)))
        open(a.write, "w").write(doc)
        print(f"gen_docs: wrote {a.write}")
        return
    if a.check:
        doc = open(a.check).read()
        problems = []
        want = config_block(binaries, read_repo_defaults(a.repo_conf))
        have = extract(doc, CFG_BEGIN, CFG_END)
        if not a.repo_conf:
            want, have = mask_imrepo_defaults(want), mask_imrepo_defaults(have)
        if want != have:
            import difflib
            diff = "\n".join(difflib.unified_diff(have.splitlines(), want.splitlines(), "in the doc", "from the binaries", lineterm="", n=1))
            problems.append("the configuration reference differs from the binaries' --check-config:\n" + diff)
        rows = doc_metric_rows(doc)
        where, info = metrics_rows(binaries, [])
        for fam in sorted(where):
            if fam not in rows:
                problems.append(f"{fam} (in {', '.join(where[fam])}) is not in the metrics reference")
        for fam in sorted(set(rows) - set(where)):
            problems.append(f"{fam} is in the metrics reference but in none of the binaries")
        problems += check_live(rows, {f: i for f, i in info.items() if f in where}, "the idle binaries")
        report(problems, a.check, f"{len(binaries)} binaries")
        return
    die("give --write, --check or --check-scrape")


def report(problems, doc, what):
    for p in problems:
        print("DRIFT: " + p)
    if problems:
        print(f"gen_docs: {doc} has drifted from {what} ({len(problems)} problems): regenerate it "
              "with `bash scripts/gen-docs.sh` (with the demo running, so metrics that need "
              "traffic are seen too)")
        sys.exit(1)
    print(f"gen_docs: {doc} matches {what}")


if __name__ == "__main__":
    main()

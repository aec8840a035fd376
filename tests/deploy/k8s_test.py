"""k8s_test.py: the Kubernetes manifests of deploy/k8s, as CI must see them.

For the base and every overlay:
  - `kustomize build` succeeds and kubeconform validates every object against
    the Kubernetes and KEDA JSON schemas (strict: an unknown field fails), from
    the cache deploy/tools/fetch-k8s-tools.sh fills (offline);
  - each task Deployment's ConfigMap config is accepted by the real binary's
    --check-config, with the environment the pod gets (values and ConfigMap
    references resolved from the build output, Secret references as
    placeholders), and the rest agrees with what the binary reports: the probe
    and metrics port is http.listen's, terminationGracePeriodSeconds exceeds
    shutdown.grace with a margin, the KEDA trigger watches the binary's own
    consumer group and topic with at most as many replicas as partitions;
  - probes, resources, non-root read-only containers, PodDisruptionBudgets,
    Secrets referenced and never inlined, the archive's two replicas.
  - the KEDA trigger's parameters against those its scaler reads (KEDA's CRD
    leaves trigger metadata a free string map).
Then deliberately broken copies (a misspelt field, a wrong type, too many
replicas, a short grace period, a config typo, a misspelt trigger parameter)
must fail, so the checks bite.

usage: k8s_test.py --k8s FILES... --versions versions.env --schemagen k8s_schemas.py
                   --binary task=path ...
"""
import argparse
import hashlib
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

TASKS = ["fanout", "push", "audit", "archive"]
OVERLAYS = ["base", "overlays/dev", "overlays/prod"]
GRACE_MARGIN_S = 10  # commit, producer flush and group leave after shutdown.grace

passes, failures = [], []


def ok(msg):
    passes.append(msg)
    print("ok - " + msg)


def fail(msg):
    failures.append(msg)
    print("not ok - " + msg)


def check(cond, msg, detail=""):
    (ok if cond else fail)(msg + ("" if cond or not detail else ": " + detail))
    return cond


def run(cmd, env=None, cwd=None):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=env, cwd=cwd)


# ---------------------------------------------------------------- tools


def tools(versions_file, schemagen):
    v = {}
    for line in open(versions_file):
        m = re.match(r"^([A-Z0-9_]+)=(\S+)", line)
        if m:
            v[m.group(1)] = m.group(2)
    cache = os.environ.get("IMTASK_CACHE") or os.path.join(
        pwd.getpwuid(os.getuid()).pw_dir, ".cache", "imtask")
    base = os.path.join(cache, "k8s-tools")
    gen = hashlib.sha256(open(schemagen, "rb").read()).hexdigest()[:12]
    t = {
        "kubeconform": os.path.join(base, "bin", "kubeconform-" + v["KUBECONFORM_VERSION"]),
        "kustomize": os.path.join(base, "bin", "kustomize-" + v["KUSTOMIZE_VERSION"]),
        "schemas": os.path.join(base, "schemas", "%s-keda-%s-%s" % (v["K8S_VERSION"], v["KEDA_VERSION"], gen)),
    }
    missing = [p for p in (t["kubeconform"], t["kustomize"]) if not os.access(p, os.X_OK)]
    if not os.path.isfile(os.path.join(t["schemas"], ".complete")):
        missing.append(t["schemas"])
    if missing:
        print("k8s_test: the manifest tools are not installed: %s\n"
              "k8s_test: run scripts/install-deps.sh (its step deploy/tools/fetch-k8s-tools.sh builds "
              "kubeconform and kustomize from the Go module proxy and makes the schemas; docs/deploy.md)"
              % ", ".join(missing))
        sys.exit(1)
    return t


def kustomize(t, path):
    r = run([t["kustomize"], "build", path])
    return r.returncode, r.stdout, r.stderr


def kubeconform(t, text):
    loc = os.path.join(t["schemas"], "{{ .ResourceKind }}{{ .KindSuffix }}.json")
    p = subprocess.run([t["kubeconform"], "-strict", "-summary", "-schema-location", loc, "-"],
                       input=text, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       universal_newlines=True)
    return p.returncode, p.stdout


# ---------------------------------------------------------------- invariants


def duration_ms(text):
    m = re.match(r"^(\d+)ms$", text.strip())
    return int(m.group(1)) if m else None


def effective(check_output):
    """section.key -> value text, from --check-config's dump."""
    vals, section = {}, None
    for line in check_output.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if not line.startswith(" "):
            section = line.rstrip(":").strip()
            continue
        key, _, rest = line.strip().partition(": ")
        val = rest.split("  # ")[0].strip().strip('"')
        vals["%s.%s" % (section, key)] = val
    return vals


def invariants(objs, binaries, tmp):
    """Problems found in one build output; [] when all is well. Prints what
    it checked."""
    problems, seen, dead_letterers = [], [], []

    def need(cond, what, detail=""):
        if cond:
            seen.append(what)
        else:
            problems.append(what + (": " + detail if detail else ""))
        return cond

    by = {}
    for o in objs:
        by.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    cms = by.get("ConfigMap", {})
    need("Secret" not in by, "no Secret is inlined (they are referenced only)",
         "found %s" % sorted(by.get("Secret", {})))
    for task in TASKS:
        name = "imtask-" + task
        dep = by.get("Deployment", {}).get(name)
        if not need(dep is not None, "%s: a Deployment" % name):
            continue
        pod = dep["spec"]["template"]["spec"]
        c = pod["containers"][0]
        labels = dep["spec"]["template"]["metadata"].get("labels", {})
        # The config as the pod sees it: the ConfigMap mounted where --config points.
        cmd = c.get("command", [])
        need(cmd[:1] == ["/usr/local/bin/" + name] and "--config" in cmd,
             "%s: runs /usr/local/bin/%s --config (the image's ENTRYPOINT)" % (name, name), str(cmd))
        cfg_path = cmd[cmd.index("--config") + 1] if "--config" in cmd else ""
        mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
        cfg_vol = [v for v in pod.get("volumes", []) if "configMap" in v
                   and os.path.join(mounts.get(v["name"], "?"), "config.yaml") == cfg_path]
        if not need(len(cfg_vol) == 1, "%s: --config %s is its mounted ConfigMap" % (name, cfg_path)):
            continue
        cm = cms.get(cfg_vol[0]["configMap"]["name"])
        if not need(cm is not None and "config.yaml" in cm.get("data", {}),
                    "%s: the ConfigMap %s holds config.yaml" % (name, cfg_vol[0]["configMap"]["name"])):
            continue
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
            elif "configMapKeyRef" in e.get("valueFrom", {}):
                ref = e["valueFrom"]["configMapKeyRef"]
                val = cms.get(ref["name"], {}).get("data", {}).get(ref["key"])
                if need(val is not None, "%s: env %s refers to an existing ConfigMap key %s/%s"
                        % (name, e["name"], ref["name"], ref["key"])):
                    env[e["name"]] = val
            elif "secretKeyRef" in e.get("valueFrom", {}):
                env[e["name"]] = "placeholder-for-secret-%s" % e["valueFrom"]["secretKeyRef"]["name"]
        cfg_file = os.path.join(tmp, "%s-config.yaml" % name)
        with open(cfg_file, "w") as f:
            f.write(cm["data"]["config.yaml"])
        r = run([binaries[task], "--config", cfg_file, "--check-config"], env=env)
        if not need(r.returncode == 0, "%s: the real binary accepts the ConfigMap's config (--check-config)"
                    % name, "exit %d: %s" % (r.returncode, (r.stderr or r.stdout).strip()[-600:])):
            continue
        eff = effective(r.stdout)
        if eff.get("consumer.unknown_tasks") == "dead_letter":
            dead_letterers.append(name)
        need(eff.get("kafka.brokers") == env.get("IMTASK_KAFKA_BROKERS") and "brokers" in r.stdout,
             "%s: kafka.brokers is the cluster's, from imtask-cluster" % name,
             "%s vs %s" % (eff.get("kafka.brokers"), env.get("IMTASK_KAFKA_BROKERS")))
        port = eff.get("http.listen", "").rsplit(":", 1)[-1]
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        need(str(ports.get("http")) == port, "%s: container port http is http.listen's %s" % (name, port),
             str(ports))
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            g = c.get(probe, {}).get("httpGet", {})
            need(g.get("path") == path and g.get("port") in ("http", ports.get("http")),
                 "%s: %s GET %s on the http port" % (name, probe, path), str(g))
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        need(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == port
             and ann.get("prometheus.io/path") == "/metrics",
             "%s: Prometheus scrape annotations on port %s" % (name, port), str(ann))
        res = c.get("resources", {})
        need(all(k in res.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
             "%s: cpu and memory requests and limits" % name, str(res))
        grace = duration_ms(eff.get("shutdown.grace", ""))
        tgps = pod.get("terminationGracePeriodSeconds", 30)
        need(grace is not None and tgps * 1000 >= grace + GRACE_MARGIN_S * 1000,
             "%s: terminationGracePeriodSeconds %s >= shutdown.grace %s ms + %d s" % (name, tgps, grace, GRACE_MARGIN_S))
        psc, csc = pod.get("securityContext", {}), c.get("securityContext", {})
        need(psc.get("runAsNonRoot") is True and psc.get("runAsUser", 0) != 0,
             "%s: runs as non-root" % name, str(psc))
        need(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False,
             "%s: read-only root filesystem, no privilege escalation" % name, str(csc))
        pdbs = [p for p in by.get("PodDisruptionBudget", {}).values()
                if p["spec"].get("selector", {}).get("matchLabels")
                and all(labels.get(k) == v for k, v in p["spec"]["selector"]["matchLabels"].items())]
        need(len(pdbs) == 1, "%s: one PodDisruptionBudget selects its pods" % name, "%d" % len(pdbs))
        if task == "archive":
            need(dep["spec"].get("replicas") == 2,
                 "%s: 2 replicas (one schedules, by etcd leader election)" % name, str(dep["spec"].get("replicas")))
        if task == "fanout":
            need("replicas" not in dep["spec"], "%s: no spec.replicas (the ScaledObject owns it)" % name)
            so = [s for s in by.get("ScaledObject", {}).values()
                  if s["spec"]["scaleTargetRef"]["name"] == name]
            if not need(len(so) == 1, "%s: a KEDA ScaledObject scales it" % name):
                continue
            so = so[0]
            trig = [t for t in so["spec"].get("triggers", []) if t["type"] == "kafka"]
            if not need(len(trig) == 1, "%s: the ScaledObject has one kafka trigger" % name):
                continue
            md = trig[0]["metadata"]
            need(md.get("consumerGroup") == eff.get("consumer.group_id") and md.get("topic") == eff.get("consumer.topic"),
                 "%s: KEDA watches the binary's group %s on %s" % (name, eff.get("consumer.group_id"), eff.get("consumer.topic")),
                 "trigger: group %s topic %s" % (md.get("consumerGroup"), md.get("topic")))
            need(md.get("bootstrapServers") == env.get("IMTASK_KAFKA_BROKERS"),
                 "%s: KEDA reads the brokers the pods use" % name,
                 "%s vs %s" % (md.get("bootstrapServers"), env.get("IMTASK_KAFKA_BROKERS")))
            parts = so["metadata"].get("annotations", {}).get("imtask.gochat.io/task-topic-partitions")
            mn, mx = so["spec"].get("minReplicaCount", 0), so["spec"].get("maxReplicaCount", 100)
            need(str(parts).isdigit() and isinstance(mn, int) and isinstance(mx, int)
                 and 1 <= mn <= mx <= int(parts),
                 "%s: 1 <= minReplicaCount %s <= maxReplicaCount %s <= partitions %s" % (name, mn, mx, parts))
    need(len(dead_letterers) == 1, "exactly one Deployment dead-letters tasks of unknown types "
         "(consumer.unknown_tasks: dead_letter)", "found %s" % dead_letterers)
    for s in seen:
        print("  checked: " + s)
    return problems


def trigger_problems(objs, schemas):
    """KEDA trigger metadata against the parameters its scaler reads
    (_keda-trigger-<type>.json from k8s_schemas.py): unknown names, values
    outside an enum, required ones missing."""
    problems = []
    for o in objs:
        if o.get("kind") != "ScaledObject":
            continue
        for t in o.get("spec", {}).get("triggers", []):
            path = os.path.join(schemas, "_keda-trigger-%s.json" % t.get("type"))
            if not os.path.isfile(path):
                problems.append("%s: no parameter list for trigger type %s" % (o["metadata"]["name"], t.get("type")))
                continue
            schema = json.load(open(path))
            md = t.get("metadata", {})
            where = "%s: %s trigger" % (o["metadata"]["name"], t["type"])
            unknown = sorted(k for k in md if k not in schema["properties"])
            if unknown:
                problems.append("%s: unknown parameter(s) %s" % (where, ", ".join(unknown)))
            for k, v in md.items():
                enum = schema["properties"].get(k, {}).get("enum")
                if enum and v not in enum:
                    problems.append("%s: %s: %r is not one of %s" % (where, k, v, enum))
            for group in schema.get("allOf", []):
                alts = [a["required"] for a in group.get("anyOf", [group])]
                if not any(all(k in md for k in alt) for alt in alts):
                    problems.append("%s: missing %s" % (where, " or ".join("+".join(a) for a in alts)))
    return problems


# ---------------------------------------------------------------- main


def validate(t, root, binaries):
    """(kustomize ok, kubeconform ok, kubeconform output, invariant problems)"""
    rc, out, err = kustomize(t, root)
    if rc:
        return False, False, err, []
    krc, kout = kubeconform(t, out)
    objs = [o for o in yaml.safe_load_all(out) if o]
    tmp = tempfile.mkdtemp(prefix="cfg-", dir=os.environ.get("TEST_TMPDIR"))
    probs = invariants(objs, binaries, tmp) + trigger_problems(objs, t["schemas"])
    return True, krc == 0, kout, probs


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--k8s", nargs="+", required=True, help="the files of deploy/k8s")
    p.add_argument("--versions", required=True)
    p.add_argument("--schemagen", required=True)
    p.add_argument("--binary", action="append", default=[])
    a = p.parse_args()
    binaries = dict(b.split("=", 1) for b in a.binary)
    t = tools(a.versions, a.schemagen)
    if "HOME" not in os.environ:
        os.environ["HOME"] = os.environ.get("TEST_TMPDIR", tempfile.gettempdir())

    work = tempfile.mkdtemp(prefix="k8s-", dir=os.environ.get("TEST_TMPDIR"))
    src = os.path.join(work, "k8s")
    roots = [f[:-len("base/kustomization.yaml")] for f in a.k8s if f.endswith("/k8s/base/kustomization.yaml")]
    if len(roots) != 1:
        sys.exit("k8s_test: --k8s must include deploy/k8s/base/kustomization.yaml")
    shutil.copytree(roots[0], src, symlinks=False)

    for o in OVERLAYS:
        print("# %s" % o)
        built, valid, out, probs = validate(t, os.path.join(src, o), binaries)
        if not check(built, "%s: kustomize build" % o, out.strip()):
            continue
        check(valid, "%s: kubeconform validates every object (strict)" % o, out.strip())
        print("  " + out.strip().splitlines()[-1] if out.strip() else "")
        check(not probs, "%s: the manifests agree with the binaries and the rules above" % o,
              "; ".join(probs))

    # Broken copies: each must fail.
    def mutate(rel, old, new):
        d = os.path.join(work, "broken")
        shutil.rmtree(d, ignore_errors=True)
        shutil.copytree(src, d)
        path = os.path.join(d, rel)
        text = open(path).read()
        assert old in text, "%s: %r not found (update the mutation)" % (rel, old)
        open(path, "w").write(text.replace(old, new, 1))
        return d

    schema_cases = [
        ("a misspelt field (livenesProbe)", "base/fanout/deployment.yaml", "livenessProbe:", "livenesProbe:"),
        ("a wrong type (maxReplicaCount: \"six\")", "base/fanout/scaledobject.yaml",
         "maxReplicaCount: 6", 'maxReplicaCount: "six"'),
        ("a missing required field (the archive container's name)", "base/archive/deployment.yaml",
         "        - name: imtask-archive\n", "        - stdin: false\n"),
        ("an apiVersion no schema knows (apps/v2)", "base/push/deployment.yaml",
         "apiVersion: apps/v1", "apiVersion: apps/v2"),
    ]
    for what, rel, old, new in schema_cases:
        d = mutate(rel, old, new)
        built, valid, out, _ = validate(t, os.path.join(d, "base"), binaries)
        check(built and not valid, "a broken manifest fails kubeconform: %s" % what,
              "kustomize %s, kubeconform said: %s" % ("ok" if built else "failed", out.strip()[-400:]))
    rule_cases = [
        ("more fan-out replicas than partitions", "base/fanout/scaledobject.yaml",
         "maxReplicaCount: 6", "maxReplicaCount: 12", "maxReplicaCount 12 <= partitions 6"),
        ("a grace period shorter than shutdown.grace + margin", "base/push/deployment.yaml",
         "terminationGracePeriodSeconds: 45", "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds 30"),
        ("a config key the binary does not know", "base/audit/config.yaml",
         "  on_exhausted: review\n", "  on_exhausted: review\n  on_exausted: review\n", "accepts the ConfigMap"),
        ("a KEDA trigger on another consumer group", "base/fanout/scaledobject.yaml",
         "consumerGroup: im-task-fanout", "consumerGroup: im-task-push", "KEDA watches"),
        ("a second Deployment dead-lettering unknown task types", "base/push/config.yaml",
         "  max_in_flight: 1000\n", "  max_in_flight: 1000\n  unknown_tasks: dead_letter\n",
         "exactly one Deployment dead-letters"),
        ("a misspelt KEDA trigger parameter (lagTreshold)", "base/fanout/scaledobject.yaml",
         "lagThreshold:", "lagTreshold:", "unknown parameter(s) lagTreshold"),
        ("a KEDA trigger value its scaler refuses (offsetResetPolicy: oldest)", "base/fanout/scaledobject.yaml",
         "offsetResetPolicy: earliest", "offsetResetPolicy: oldest", "offsetResetPolicy: 'oldest' is not one of"),
    ]
    for what, rel, old, new, expect in rule_cases:
        d = mutate(rel, old, new)
        built, valid, out, probs = validate(t, os.path.join(d, "base"), binaries)
        check(built and any(expect in pr for pr in probs), "a broken manifest fails the rules: %s" % what,
              "problems: %s" % probs)
        for pr in probs:
            if expect in pr:
                print("  (as expected: %s)" % pr[:300])

    print("k8s_test: %d passed, %d failed" % (len(passes), len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

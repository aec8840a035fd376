"""dockerfile_test.py: each Dockerfile of deploy/docker against the binary the
Bazel build really produces, since no container engine runs here.

For every binary (name=label=path-of-the-built-file=path-of-its-genquery; the
file is the -c opt build the images make, tests/deploy/opt.bzl):
  - deploy/docker/<name>.Dockerfile exists; stage 1 is `FROM debian:12 AS
    build`, the last stage `FROM debian:12-slim` (this machine's release, whose
    packages the mapping below reads);
  - the build stage runs `bazel build -c opt <label>` and copies the file that
    target produces (bazel-bin/<package>/<name>) to the path the runtime stage
    takes with COPY --from=build, which is the ENTRYPOINT;
  - the build stage copies the WORKSPACE, .bazelrc, the local repositories the
    WORKSPACE names by relative path, and every Bazel package of the binary's
    deps (genquery); it installs the Debian package of each local repository
    with an absolute path, and the -dev package holding the link-time .so of
    every library the binary links (glibc and libstdc++ come with gcc/g++);
  - the runtime stage installs exactly the Debian packages that provide the
    binary's DT_NEEDED libraries (readelf -d; ldconfig and dpkg -S map a
    library to its package), beyond libc6 of the base image and ca-certificates
    for TLS: a missing package and an unneeded one both fail, naming it;
  - it runs as a numeric non-root USER; a binary started with --config gets
    that file COPYed from the repository, and EXPOSEs the port of http.listen.
Sanitizer runtimes (libasan, libubsan: the --config=asan pass) are ignored.
"""
import argparse
import glob
import json
import os
import re
import shlex
import subprocess
import sys

import yaml

BASE_IMAGE_PACKAGES = {"libc6"}  # essential in debian:12-slim
EXTRA_RUNTIME_PACKAGES = {
    "ca-certificates": "TLS to Kafka, etcd, im-repo and the providers (APNs, FCM, moderation, S3)",
    "tzdata": "the IANA time zones of cron jobs (read from /usr/share/zoneinfo, not linked)",
}
TOOLCHAIN_DEV = {"libc6-dev", "libstdc++-12-dev", "libgcc-12-dev"}  # brought by gcc/g++
SANITIZER_LIBS = re.compile(r"^lib(asan|ubsan|lsan|tsan)\.so")
LIB_DIRS = ["/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu"] + glob.glob(
    "/usr/lib/gcc/x86_64-linux-gnu/*")

failures = []
passes = []


def fail(msg):
    failures.append(msg)
    print("not ok - " + msg)


def ok(msg):
    passes.append(msg)
    print("ok - " + msg)


def check(cond, msg, detail=""):
    if cond:
        ok(msg)
    else:
        fail(msg + (": " + detail if detail else ""))
    return cond


def run(cmd):
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True)


# ---------------------------------------------------------------- Dockerfile


def parse_dockerfile(path):
    """[(instruction, argument text, line)], continuation lines joined and
    comment lines dropped, as Docker reads them."""
    out, cur, start = [], "", 0
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            if line.lstrip().startswith("#"):
                continue
            if not cur:
                if not line.strip():
                    continue
                start = n
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            cur += line
            word, _, rest = cur.strip().partition(" ")
            out.append((word.upper(), rest.strip(), start))
            cur = ""
    return out


def stages(instrs):
    """[{'from': image, 'name': alias, 'instrs': [...]}]"""
    st = []
    for ins in instrs:
        if ins[0] == "FROM":
            words = ins[1].split()
            st.append({"from": words[0],
                       "name": words[2] if len(words) >= 3 and words[1].upper() == "AS" else "",
                       "instrs": []})
        elif st:
            st[-1]["instrs"].append(ins)
    return st


def commands(run_text):
    """A RUN's shell commands, split at && (what these Dockerfiles use)."""
    return [shlex.split(c) for c in run_text.split("&&") if c.strip()]


def strip_run_flags(words):
    return [w for w in words if not w.startswith("--mount=")]


def apt_installs(stage):
    pkgs = []
    for ins in stage["instrs"]:
        if ins[0] != "RUN":
            continue
        for cmd in commands(ins[1]):
            cmd = [w for w in cmd if "=" not in w or w.startswith("-")]  # VAR=value prefixes
            if len(cmd) >= 2 and cmd[0] == "apt-get" and "install" in cmd:
                pkgs += [w for w in cmd[cmd.index("install") + 1:] if not w.startswith("-")]
    return pkgs


def copies(stage):
    """[(from-stage or None, [sources], destination)]"""
    out = []
    for ins in stage["instrs"]:
        if ins[0] != "COPY":
            continue
        words = ins[1].split()
        frm = None
        for w in [w for w in words if w.startswith("--")]:
            if w.startswith("--from="):
                frm = w[len("--from="):]
        words = [w for w in words if not w.startswith("--")]
        out.append((frm, words[:-1], words[-1]))
    return out


def instr_args(stage, name):
    return [ins[1] for ins in stage["instrs"] if ins[0] == name]


# ---------------------------------------------------------------- libraries


def needed(binary):
    r = run(["readelf", "-d", binary])
    if r.returncode:
        sys.exit("readelf -d %s failed (binutils): %s" % (binary, r.stderr))
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", r.stdout)


_ldconfig = None


def lib_path(soname):
    global _ldconfig
    if _ldconfig is None:
        exe = next((p for p in ("/sbin/ldconfig", "/usr/sbin/ldconfig") if os.path.exists(p)), "ldconfig")
        _ldconfig = {}
        for line in run([exe, "-p"]).stdout.splitlines():
            m = re.match(r"\s*(\S+) \(([^)]*)\) => (\S+)", line)
            if m and "x86-64" in m.group(2):
                _ldconfig.setdefault(m.group(1), m.group(3))
    return _ldconfig.get(soname)


_dpkg_cache = {}


def package_of(path):
    """The Debian package shipping path (usrmerge: /lib and /usr/lib both tried)."""
    cands = [path]
    if path.startswith("/usr/lib/"):
        cands.append(path[len("/usr"):])
    elif path.startswith("/lib/"):
        cands.append("/usr" + path)
    for c in cands:
        if c in _dpkg_cache:
            return _dpkg_cache[c]
        r = run(["dpkg", "-S", c])
        if r.returncode == 0:
            pkg = r.stdout.split(":")[0].strip()
            _dpkg_cache[c] = pkg
            return pkg
    return None


def dev_link_of(path):
    """The link-time libX.so that resolves to the same file as path."""
    real = os.path.realpath(path)
    for d in LIB_DIRS:
        for so in glob.glob(os.path.join(d, "*.so")):
            if os.path.islink(so) and os.path.realpath(so) == real:
                return so
    return None


def installed(pkg):
    r = run(["dpkg-query", "-W", "-f=${Status}", pkg])
    return r.returncode == 0 and "install ok installed" in r.stdout


# ---------------------------------------------------------------- checks


def workspace_local_repos(workspace):
    text = open(workspace).read()
    return re.findall(r"local_repository\(\s*name\s*=\s*\"([^\"]+)\",\s*path\s*=\s*\"([^\"]+)\"", text)


def covered(path, sources):
    """True if a COPY source (a file or a directory) includes path."""
    for s in sources:
        s = s.rstrip("/")
        if s in (".", "") or path == s or path.startswith(s + "/"):
            return True
    return False


def check_binary(name, label, binary, depsfile, dockerfile, args, srcroot):
    print("# %s (%s): %s" % (name, label, binary))
    instrs = parse_dockerfile(dockerfile)
    st = stages(instrs)
    if not check(len(st) >= 2, "%s: a multi-stage Dockerfile" % name, "%d stage(s)" % len(st)):
        return
    build, runtime = st[0], st[-1]
    check(build["from"] == "debian:12" and build["name"] == "build",
          "%s: the build stage is FROM debian:12 AS build" % name,
          "got FROM %s AS %s" % (build["from"], build["name"]))
    check(runtime["from"] == "debian:12-slim", "%s: the runtime stage is FROM debian:12-slim" % name,
          "got %s" % runtime["from"])

    # The Bazel target and the file it produces.
    pkg, _, target = label[2:].partition(":")
    produced = "bazel-bin/%s/%s" % (pkg, target)
    check(binary.endswith("/%s/%s" % (pkg, target)) or binary == "%s/%s" % (pkg, target),
          "%s: the built file is %s/%s" % (name, pkg, target), binary)
    bazel_cmds, installs = [], []
    for run_text in instr_args(build, "RUN"):
        for cmd in commands(run_text):
            cmd = strip_run_flags(cmd)
            if cmd[:2] == ["bazel", "build"]:
                bazel_cmds.append(cmd)
            if cmd and cmd[0] == "install":
                installs.append([w for w in cmd[1:] if not w.startswith("-") and not re.match(r"^0?[0-7]{3,4}$", w)])
    check(any(label in c and "-c" in c and c[c.index("-c") + 1] == "opt" for c in bazel_cmds),
          "%s: the build stage runs bazel build -c opt %s" % (name, label),
          "bazel commands: %s" % bazel_cmds)
    out = [i[-1] for i in installs if len(i) == 2 and i[0] == produced]
    check(len(out) == 1, "%s: the build stage takes %s out of the Bazel tree" % (name, produced),
          "install commands: %s" % installs)
    rcopies = copies(runtime)
    fromb = [c for c in rcopies if c[0] == build["name"]]
    dest = None
    if check(len(fromb) == 1 and out and fromb[0][1] == [out[0]],
             "%s: the runtime stage copies the built binary from the build stage" % name,
             "COPY --from: %s, built file at %s" % (fromb, out)):
        dest = fromb[0][2]

    # Sources of the build: the genquery packages, WORKSPACE, .bazelrc and the
    # relative local repositories.
    bsrc = [s for c in copies(build) if c[0] is None for s in c[1]]
    labels = [l.strip() for l in open(depsfile) if l.strip().startswith("//")]
    packages = sorted({l[2:].split(":")[0] for l in labels})
    missing = [p or "(root)" for p in packages if not (covered(p, bsrc) if p else "BUILD.bazel" in bsrc)]
    check(not missing, "%s: the build stage copies the %d Bazel packages %s is built from"
          % (name, len(packages), label), "not copied: %s" % missing)
    for f in ("WORKSPACE", ".bazelrc"):
        check(covered(f, bsrc), "%s: the build stage copies %s" % (name, f))
    missing_src = [s for s in bsrc if not os.path.exists(os.path.join(srcroot, s))]
    check(not missing_src, "%s: every COPY source of the build stage exists" % name, str(missing_src))
    bpkgs = apt_installs(build)
    for repo, path in workspace_local_repos(args.workspace):
        if path.startswith("/"):
            owner = package_of(path)
            check(owner in bpkgs, "%s: the build stage installs %s, which holds @%s (%s)"
                  % (name, owner, repo, path), "build packages: %s" % bpkgs)
        else:
            check(covered(path, bsrc), "%s: the build stage copies @%s (%s)" % (name, repo, path))
    not_real = [p for p in bpkgs if not installed(p)]
    check(not not_real, "%s: every build-stage package is a Debian package installed here "
          "(scripts/install-deps.sh)" % name, "not installed: %s" % not_real)

    # Libraries: runtime packages and -dev packages.
    libs = [l for l in needed(binary) if not SANITIZER_LIBS.match(l)]
    need_rt, need_dev, unknown = {}, {}, []
    for lib in libs:
        path = lib_path(lib)
        pkg = package_of(path) if path else None
        if not pkg:
            unknown.append(lib)
            continue
        need_rt.setdefault(pkg, []).append(lib)
        if pkg in BASE_IMAGE_PACKAGES:
            continue
        link = dev_link_of(path)
        dev = package_of(link) if link else None
        need_dev.setdefault(dev or "(no -dev package found for %s)" % lib, []).append(lib)
    check(not unknown, "%s: every DT_NEEDED library maps to a Debian package" % name, str(unknown))
    rt = set(apt_installs(runtime))
    required = set(need_rt) - BASE_IMAGE_PACKAGES
    missing = sorted(required - rt)
    check(not missing, "%s: the runtime stage installs the package of every library the binary "
          "links (%s)" % (name, ", ".join(sorted(libs))),
          "add %s" % ", ".join("%s (for %s)" % (p, " ".join(need_rt[p])) for p in missing))
    extra = sorted(rt - required - set(EXTRA_RUNTIME_PACKAGES))
    check(not extra, "%s: the runtime stage installs nothing the binary does not link" % name,
          "remove %s (they provide none of %s)" % (", ".join(extra), ", ".join(sorted(libs))))
    for p in sorted(rt & set(EXTRA_RUNTIME_PACKAGES)):
        ok("%s: %s beyond the linked libraries: %s" % (name, p, EXTRA_RUNTIME_PACKAGES[p]))
    gcc = {"gcc", "g++"} <= set(bpkgs)
    missing_dev = sorted(d for d in need_dev if d not in bpkgs and not (gcc and d in TOOLCHAIN_DEV))
    check(not missing_dev, "%s: the build stage installs the -dev package of every linked library"
          % name, "add %s" % ", ".join("%s (for %s)" % (d, " ".join(need_dev[d])) for d in missing_dev))

    # User, entrypoint, config, port.
    users = instr_args(runtime, "USER")
    uid = users[-1].split(":")[0] if users else "0"
    check(uid.isdigit() and int(uid) != 0, "%s: runs as a numeric non-root USER" % name,
          "USER %s" % (users[-1] if users else "(none)"))
    eps = instr_args(runtime, "ENTRYPOINT")
    try:
        ep = json.loads(eps[-1]) if eps else []
    except ValueError:
        ep = []
    check(bool(ep) and ep[0] == dest, "%s: the ENTRYPOINT (exec form) runs the copied binary" % name,
          "ENTRYPOINT %s, binary at %s" % (eps, dest))
    exposes = [p.split("/")[0] for e in instr_args(runtime, "EXPOSE") for p in e.split()]
    if "--config" in ep:
        cfg_path = ep[ep.index("--config") + 1]
        src = [c[1][0] for c in rcopies if c[0] is None and c[2] == cfg_path and len(c[1]) == 1]
        if check(len(src) == 1, "%s: the image has its config at %s" % (name, cfg_path), str(rcopies)):
            srcfile = os.path.join(srcroot, src[0])
            if check(os.path.isfile(srcfile), "%s: the config %s exists" % (name, src[0])):
                listen = ((yaml.safe_load(open(srcfile)) or {}).get("http") or {}).get("listen", "0.0.0.0:9090")
                port = str(listen).rsplit(":", 1)[-1]
                check(exposes == [port], "%s: EXPOSEs the http.listen port %s of its config" % (name, port),
                      "EXPOSE %s" % exposes)
    else:
        check(not exposes, "%s: a tool without --config exposes no port" % name, str(exposes))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--workspace", required=True)
    p.add_argument("--bazelrc", required=True)
    p.add_argument("--dockerfiles", nargs="+", required=True)
    p.add_argument("--binaries", nargs="+", required=True)
    args = p.parse_args()

    osr = dict(l.rstrip("\n").split("=", 1) for l in open("/etc/os-release") if "=" in l)
    if osr.get("ID") != "debian" or osr.get("VERSION_ID", "").strip('"') != "12":
        sys.exit("dockerfile_test: the images are Debian 12 and the library-to-package mapping reads "
                 "this machine's dpkg database: run it on Debian 12 (found %s %s)"
                 % (osr.get("ID"), osr.get("VERSION_ID")))
    # The repository the Dockerfiles' COPY sources are read from (the data files
    # are links into it).
    srcroot = os.path.dirname(os.path.realpath(args.workspace))
    byname = {os.path.basename(d)[:-len(".Dockerfile")]: d for d in args.dockerfiles}
    for spec in args.binaries:
        name, label, binary, depsfile = spec.split("=")
        df = byname.pop(name, None)
        if check(df is not None, "%s: deploy/docker/%s.Dockerfile exists" % (name, name)):
            check_binary(name, label, binary, depsfile, df, args, srcroot)
    check(not byname, "every Dockerfile belongs to a binary of this test", str(sorted(byname)))
    print("dockerfile_test: %d passed, %d failed" % (len(passes), len(failures)))
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

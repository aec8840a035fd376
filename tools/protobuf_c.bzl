"""protobuf_c_library: C code for .proto files with protoc-c, as a cc_library.

    protobuf_c_library(name = "task_proto", srcs = ["task.proto"])

gives task.pb-c.h / task.pb-c.c; include it as "proto/task.pb-c.h".
protoc-c comes from Debian's protobuf-c-compiler (scripts/install-deps.sh).
"""

def protobuf_c_library(name, srcs, deps = [], visibility = None):
    hdrs = [s[:-len(".proto")] + ".pb-c.h" for s in srcs]
    cs = [s[:-len(".proto")] + ".pb-c.c" for s in srcs]
    native.genrule(
        name = name + "_gen",
        srcs = srcs + [d + "_srcs" for d in deps],
        outs = hdrs + cs,
        cmd = "protoc-c --proto_path=. --c_out=$(GENDIR) " +
              " ".join(["$(location %s)" % s for s in srcs]),
        message = "protoc-c " + " ".join(srcs),
    )
    native.filegroup(name = name + "_srcs", srcs = srcs, visibility = visibility)
    native.cc_library(
        name = name,
        srcs = cs,
        hdrs = hdrs,
        copts = ["-Wno-unused-parameter"],
        deps = deps + ["//third_party/systemlibs:protobuf_c"],
        visibility = visibility,
    )

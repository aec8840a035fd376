"""opt_binary: a cc_binary built with -c opt (what the Dockerfiles build),
whatever the configuration of the test that uses it (fastbuild, asan).

The file is made available as <name>/<package>/<binary name>, so a test can
see which target it came from.
"""

def _opt_transition_impl(settings, attr):
    return {"//command_line_option:compilation_mode": "opt"}

_opt_transition = transition(
    implementation = _opt_transition_impl,
    inputs = [],
    outputs = ["//command_line_option:compilation_mode"],
)

def _opt_binary_impl(ctx):
    dep = ctx.attr.binary
    if type(dep) == "list":
        dep = dep[0]
    exe = dep[DefaultInfo].files_to_run.executable
    label = dep.label
    out = ctx.actions.declare_file("%s/%s/%s" % (ctx.label.name, label.package, label.name))
    ctx.actions.symlink(output = out, target_file = exe, is_executable = True)
    return [DefaultInfo(files = depset([out]), runfiles = ctx.runfiles(files = [out]))]

_opt_binary = rule(
    implementation = _opt_binary_impl,
    attrs = {
        "binary": attr.label(cfg = _opt_transition, mandatory = True),
        "_allowlist_function_transition": attr.label(
            default = "@bazel_tools//tools/allowlists/function_transition_allowlist",
        ),
    },
)

def opt_binary(name, binary, **kwargs):
    _opt_binary(name = name, binary = binary, **kwargs)

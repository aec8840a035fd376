# syntax=docker/dockerfile:1
# imtask-archive: scheduled jobs: message archiving and statistics reports
# Build from the repository root:
#   docker build -f deploy/docker/imtask-archive.Dockerfile -t imtask-archive:$(cat VERSION) .
# Stage 1 runs the project's own Bazel build (Debian's bazel-bootstrap, offline,
# as on a developer machine; docs/building.md). Stage 2 is debian:12-slim with
# only the shared libraries the binary links (its DT_NEEDED entries, mapped to
# Debian packages; //tests/deploy:dockerfile_test checks both lists against
# the binary Bazel really builds). docs/deploy.md explains the images.

FROM debian:12 AS build
# The Bazel toolchain and the -dev packages of the system libraries in
# third_party/systemlibs (the same names as scripts/install-deps.sh). This
# stage is identical in every im-task Dockerfile, so the layer is shared.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      bazel-bootstrap bazel-rules-java gcc g++ protobuf-c-compiler \
      libcjson-dev libcurl4-openssl-dev libmicrohttpd-dev libnghttp2-dev \
      libprotobuf-c-dev librdkafka-dev libssl-dev libyaml-dev libzstd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build of this binary reads (its Bazel packages, the WORKSPACE
# and the local repositories it names), so unrelated changes keep the cache.
COPY WORKSPACE BUILD.bazel VERSION .bazelrc ./
COPY third_party/ third_party/
COPY tools/ tools/
COPY proto/ proto/
COPY libs/ libs/
COPY tasks/archive/ tasks/archive/
RUN --mount=type=cache,target=/root/.cache/bazel \
    bazel build -c opt //tasks/archive:imtask-archive \
 && install -D -m 0755 bazel-bin/tasks/archive/imtask-archive /out/imtask-archive \
 && bazel shutdown

FROM debian:12-slim
# Runtime libraries: exactly the packages that provide the binary's DT_NEEDED
# libraries (libc6 is in the base image), plus ca-certificates for TLS and
# tzdata for the time zones of the cron jobs (read from /usr/share/zoneinfo).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates tzdata libcjson1 libcurl4 libmicrohttpd12 libnghttp2-14 libprotobuf-c1 \
      librdkafka1 libssl3 libstdc++6 libyaml-0-2 libzstd1 \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 imtask \
 && useradd --system --uid 10001 --gid imtask --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin imtask
COPY --from=build /out/imtask-archive /usr/local/bin/imtask-archive
# The default configuration; Kubernetes mounts its ConfigMap over it. Every key
# can also be set from the environment (IMTASK_<SECTION>_<KEY>), e.g.
#   docker run -e IMTASK_KAFKA_BROKERS=kafka:9092 -e IMTASK_IMREPO_ETCD_ENDPOINTS=http://etcd:2379 imtask-archive:0.1.0
COPY deploy/k8s/base/archive/config.yaml /etc/imtask/config.yaml
USER 10001:10001
# /healthz, /readyz and /metrics (http.listen in the configuration).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/imtask-archive", "--config", "/etc/imtask/config.yaml"]

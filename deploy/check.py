#!/usr/bin/env python3
"""Offline checks of tachyon's container image and Kubernetes manifests.

Usage: check.py [--root DIR] [--properties-out FILE]

1. Every manifest in DIR/deploy/kubernetes validates against the Kubernetes API schemas
   (kubernetes-validate, strict: unknown fields are errors), and kustomization.yaml lists
   exactly the manifests there.
2. The fields that make tachyon work on Kubernetes are right: masters in a StatefulSet
   behind a headless Service that publishes not-ready pods, each advertising its stable
   name; readiness on /readyz (the leader) and liveness on /healthz; workers in a DaemonSet
   with a memory-backed volume as their RAM folder; Prometheus annotations on the web
   ports; ZooKeeper from an upstream image; non-root everywhere.
3. DIR/Dockerfile parses (the official parser, through the `dockerfile` package), is
   multi-stage, and its last stage runs the tachyon binary as a non-root user.
With --properties-out, the ConfigMap's tachyon-site.properties is written to FILE so the
caller can load it with tachyon's own configuration code.
Prints one line per problem and a closing "N passed, N failed" line; exits 1 on any problem.
"""

import argparse
import pathlib
import subprocess
import sys

import yaml

MASTER_RPC, MASTER_WEB, WORKER_RPC, WORKER_DATA, WORKER_WEB = 19998, 19999, 29998, 29999, 30000


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}")
        return ok


def load_manifests(folder):
    docs = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs[(doc["kind"], doc["metadata"]["name"] if "metadata" in doc else path.name)] = (path, doc)
    return docs


def container_port(container, number):
    return any(p.get("containerPort") == number for p in container.get("ports", []))


def probe_target(container, probe, ports_by_name):
    get = container.get(probe, {}).get("httpGet", {})
    port = get.get("port")
    return get.get("path"), ports_by_name.get(port, port)


def env_value(container, name):
    for e in container.get("env", []):
        if e["name"] == name:
            return e.get("value")
    return None


def check_pod_security(c, pod_spec, who):
    sc = pod_spec.get("securityContext", {})
    c.check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, f"{who}: pods run as a non-root user")
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        csc = container.get("securityContext", {})
        c.check(csc.get("allowPrivilegeEscalation") is False, f"{who}/{container['name']}: no privilege escalation")


def check_prometheus(c, template, port, who):
    ann = template["metadata"].get("annotations", {})
    c.check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(port) and ann.get("prometheus.io/path") == "/metrics",
            f"{who}: Prometheus scrape annotations point at /metrics on port {port}")


def check_manifests(c, folder, properties_out):
    manifests = sorted(p.name for p in folder.glob("*.yaml") if p.name != "kustomization.yaml")
    validate = subprocess.run(
        [str(pathlib.Path(sys.executable).with_name("kubernetes-validate")), "--strict", "--quiet", *[str(folder / m) for m in manifests]],
        capture_output=True, text=True)
    c.check(validate.returncode == 0, f"manifests validate against the Kubernetes schemas (strict):\n{validate.stdout}{validate.stderr}")
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    c.check(sorted(kustomization.get("resources", [])) == manifests, f"kustomization.yaml lists exactly {manifests}")

    docs = load_manifests(folder)
    services = {name: doc for (kind, name), (_, doc) in docs.items() if kind == "Service"}

    # Masters.
    masters = [doc for (kind, _), (_, doc) in docs.items() if kind == "StatefulSet" and doc["metadata"]["name"] == "tachyon-master"]
    if c.check(len(masters) == 1, "one StatefulSet tachyon-master"):
        m = masters[0]
        spec = m["spec"]
        headless = services.get(spec.get("serviceName"), {})
        c.check(headless.get("spec", {}).get("clusterIP") == "None", "masters' serviceName is a headless Service (stable network identities)")
        c.check(headless.get("spec", {}).get("publishNotReadyAddresses") is True, "the headless Service publishes standbys (never Ready) too")
        c.check(spec.get("replicas", 1) >= 2, "more than one master")
        c.check(spec.get("podManagementPolicy") == "Parallel", "masters start in parallel (a standby is never Ready)")
        pod = spec["template"]["spec"]
        master = next((x for x in pod["containers"] if x["name"] == "master"), None)
        if c.check(master is not None, "a container named master"):
            ports = {p["name"]: p["containerPort"] for p in master.get("ports", [])}
            c.check(container_port(master, MASTER_RPC) and container_port(master, MASTER_WEB), "master ports 19998 and 19999")
            c.check(probe_target(master, "readinessProbe", ports) == ("/readyz", MASTER_WEB), "master readiness: /readyz on 19999 (only the leader is Ready)")
            c.check(probe_target(master, "livenessProbe", ports) == ("/healthz", MASTER_WEB), "master liveness: /healthz on 19999")
            address = env_value(master, "TACHYON_MASTER_ADDRESS") or ""
            c.check("$(POD_NAME)" in address and f".{spec.get('serviceName')}." in address, f"each master advertises its stable name, got {address!r}")
            c.check(master.get("args") == ["master"], "the master container runs `tachyon master`")
        inits = pod.get("initContainers", [])
        c.check(any(i.get("args") == ["format", "--if-unformatted"] for i in inits), "an init container formats the journal only if it is unformatted")
        check_prometheus(c, spec["template"], MASTER_WEB, "masters")
        check_pod_security(c, pod, "masters")
        leader = services.get("tachyon-master", {}).get("spec", {})
        c.check(leader.get("clusterIP") != "None" and leader.get("selector") == spec["selector"]["matchLabels"],
                "Service tachyon-master selects the masters (Ready = the leader)")

    # Workers.
    workers = [doc for (kind, _), (_, doc) in docs.items() if kind == "DaemonSet" and doc["metadata"]["name"] == "tachyon-worker"]
    if c.check(len(workers) == 1, "one DaemonSet tachyon-worker"):
        spec = workers[0]["spec"]
        pod = spec["template"]["spec"]
        worker = next((x for x in pod["containers"] if x["name"] == "worker"), None)
        if c.check(worker is not None, "a container named worker"):
            ports = {p["name"]: p["containerPort"] for p in worker.get("ports", [])}
            c.check(all(container_port(worker, p) for p in (WORKER_RPC, WORKER_DATA, WORKER_WEB)), "worker ports 29998, 29999, 30000")
            c.check(probe_target(worker, "livenessProbe", ports) == ("/healthz", WORKER_WEB), "worker liveness: /healthz on 30000")
            c.check(probe_target(worker, "readinessProbe", ports) == ("/healthz", WORKER_WEB), "worker readiness: /healthz on 30000")
            ram = env_value(worker, "TACHYON_RAM_FOLDER")
            mounts = {v["mountPath"]: v["name"] for v in worker.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            ram_volume = volumes.get(mounts.get(ram), {})
            c.check(ram_volume.get("emptyDir", {}).get("medium") == "Memory", f"the RAM folder {ram} is a memory-backed emptyDir")
            c.check("$(POD_IP)" in (env_value(worker, "TACHYON_WORKER_JAVA_OPTS") or ""), "each worker advertises its pod IP")
            limit = worker.get("resources", {}).get("limits", {}).get("memory")
            c.check(limit is not None and to_bytes(limit) > to_bytes(ram_volume.get("emptyDir", {}).get("sizeLimit", "0")),
                    "the worker's memory limit leaves room above its tmpfs size")
        check_prometheus(c, spec["template"], WORKER_WEB, "workers")
        check_pod_security(c, pod, "workers")

    # ZooKeeper and the configuration.
    zk = [doc for (kind, name), (_, doc) in docs.items() if kind == "StatefulSet" and name == "zookeeper"]
    if c.check(len(zk) == 1, "a ZooKeeper StatefulSet"):
        images = [x["image"] for x in zk[0]["spec"]["template"]["spec"]["containers"]]
        c.check(all(i.startswith("zookeeper:") for i in images), f"ZooKeeper runs the upstream image, got {images}")
        zk_service = zk[0]["spec"]["serviceName"]
    config = [doc for (kind, name), (_, doc) in docs.items() if kind == "ConfigMap" and name == "tachyon-config"]
    if c.check(len(config) == 1 and "tachyon-site.properties" in config[0].get("data", {}), "ConfigMap tachyon-config holds tachyon-site.properties"):
        props = config[0]["data"]["tachyon-site.properties"]
        zk_line = next((line for line in props.splitlines() if line.startswith("tachyon.zookeeper.address=")), "")
        servers = zk_line.split("=", 1)[-1].split(",")
        c.check(len(servers) == 3 and all(f".{zk_service}:2181" in s for s in servers) if zk else False,
                f"tachyon.zookeeper.address names the three ZooKeeper pods, got {servers}")
        if properties_out:
            pathlib.Path(properties_out).write_text(props)


def to_bytes(quantity):
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * factor
    return float(quantity)


def check_dockerfile(c, path):
    import dockerfile

    try:
        commands = dockerfile.parse_file(str(path))
    except dockerfile.GoParseError as e:
        c.check(False, f"Dockerfile parses: {e}")
        return
    stages = [i for i, cmd in enumerate(commands) if cmd.cmd == "FROM"]
    c.check(len(stages) >= 2, "the Dockerfile is multi-stage (toolchain only in the build stage)")
    last = commands[stages[-1]:] if stages else []
    builds = [cmd for cmd in commands[: stages[-1]] if cmd.cmd == "RUN" and "cargo build" in " ".join(cmd.value)] if stages else []
    c.check(any("--release" in " ".join(b.value) and "--locked" in " ".join(b.value) and "s3,hdfs" in " ".join(b.value) for b in builds),
            "the build stage builds the release binary, locked, with the S3 and HDFS backends")
    c.check(any(cmd.cmd == "COPY" and any(f.startswith("--from=") for f in cmd.flags) and "target/release/tachyon" in " ".join(cmd.value) for cmd in last),
            "the run stage copies only the built binary from the build stage")
    users = [cmd.value[0] for cmd in last if cmd.cmd == "USER"]
    c.check(bool(users) and users[-1].split(":")[0] not in ("root", "0"), f"the image runs as a non-root user, got {users}")
    entry = [" ".join(cmd.value) for cmd in last if cmd.cmd == "ENTRYPOINT"]
    c.check(bool(entry) and "tachyon" in entry[-1], "the entrypoint is the tachyon binary")
    exposed = {int(p) for cmd in last if cmd.cmd == "EXPOSE" for p in cmd.value}
    c.check({MASTER_RPC, MASTER_WEB, WORKER_RPC, WORKER_DATA, WORKER_WEB} <= exposed, f"the image exposes the five default ports, got {sorted(exposed)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(pathlib.Path(__file__).resolve().parent.parent))
    parser.add_argument("--properties-out")
    args = parser.parse_args()
    root = pathlib.Path(args.root)
    c = Checks()
    check_manifests(c, root / "deploy" / "kubernetes", args.properties_out)
    check_dockerfile(c, root / "Dockerfile")
    print(f"deploy checks: {c.passed} passed, {c.failed} failed")
    sys.exit(1 if c.failed else 0)


if __name__ == "__main__":
    main()

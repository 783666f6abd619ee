#!/usr/bin/env python3
"""Checks what validate_istio.py skips, and what no schema sees: tests/validate-manifests.sh runs it.

  check_other_kinds.py --k8s-version 1.35 [--skipped FILE#N]... FILE...

* Each --skipped document (one validate_istio.py reported as SKIP) must be a kind known here:
  - IstioOperator (install.istio.io/v1alpha1, read by `istioctl manifest generate`): field names
    against istio/istio operator/pkg/apis/types.go and istio/api mesh/v1alpha1/config.proto (the
    fields used here), Kubernetes-typed fields of components.*.k8s against the Kubernetes schema
    (kubernetes-validate, wrapped in a Service or Pod);
  - kind Cluster (kind.x-k8s.io/v1alpha4): field names and enums against kubernetes-sigs/kind
    pkg/apis/config/v1alpha4/types.go.
  Any other kind fails: nothing would have checked it.
* Cross-file references over all FILEs: the tracing providers' collector Services and ports (with
  the protocol Istio infers from the port name), the default tracing providers, the Telemetries'
  providers, the kind port mapping, JAEGER_AGENT_HOST/PORT, DOWNSTREAM_URL and Ingress backends
  point at things that exist.

Prints `OK      what` or `INVALID what` plus reasons, one per check. Exit 1 on any INVALID.
"""
import argparse
import copy
import ipaddress
import sys
import urllib.parse

import kubernetes_validate
import yaml

# istio/istio operator/pkg/apis/types.go
IOP_SPEC = {"profile", "installPackagePath", "hub", "tag", "namespace", "revision", "compatibilityVersion",
            "meshConfig", "components", "values", "unvalidatedValues"}
IOP_COMPONENTS = {"base", "pilot", "cni", "ztunnel", "istiodRemote", "ingressGateways", "egressGateways", "gateway"}
IOP_BASE = {"enabled", "k8s"}
IOP_COMPONENT = IOP_BASE | {"namespace", "hub", "tag"}
IOP_GATEWAY = IOP_COMPONENT | {"name", "label"}
IOP_K8S = {"affinity", "env", "hpaSpec", "imagePullPolicy", "nodeSelector", "podDisruptionBudget", "podAnnotations",
           "priorityClassName", "readinessProbe", "replicaCount", "resources", "service", "strategy", "tolerations",
           "serviceAnnotations", "securityContext", "volumes", "volumeMounts", "overlays"}
# KubernetesResources fields that are plain Kubernetes types, checked inside a Pod (spec or container)
IOP_K8S_POD = {"affinity", "nodeSelector", "priorityClassName", "securityContext", "tolerations", "volumes"}
IOP_K8S_CONTAINER = {"env", "imagePullPolicy", "readinessProbe", "resources", "volumeMounts"}
# istio/api mesh/v1alpha1/config.proto (JSON names), the part of MeshConfig this project may use
MESH = {"enableTracing", "defaultConfig", "extensionProviders", "defaultProviders", "accessLogFile",
        "accessLogFormat", "accessLogEncoding", "outboundTrafficPolicy", "ingressClass", "ingressService",
        "ingressControllerMode", "ingressSelector", "rootNamespace", "trustDomain", "enableAutoMtls"}
PROXY_CONFIG = {"tracing"}  # mesh/v1alpha1/proxy.proto: only what is used here
PROVIDERS = {"envoyExtAuthzHttp", "envoyExtAuthzGrpc", "zipkin", "lightstep", "datadog", "stackdriver", "opencensus",
             "skywalking", "opentelemetry", "prometheus", "envoyFileAccessLog", "envoyHttpAls", "envoyTcpAls",
             "envoyOtelAls"}
# The tracing providers used here, every field of Istio 1.30.3's config.proto (JSON names, types)
ZIPKIN = {"service": str, "port": int, "maxTagLength": int, "enable64bitTraceId": bool, "path": str,
          "traceContextOption": str, "timeout": str, "headers": list}
ZIPKIN_TRACE_CONTEXT = {"USE_B3", "USE_B3_WITH_W3C_PROPAGATION"}
OPENTELEMETRY = {"service": str, "port": int, "maxTagLength": int, "http": dict, "grpc": dict,
                 "resourceDetectors": dict, "serviceAttributeEnrichment": str, "dynatraceSampler": dict}
TRACERS = {"zipkin": ZIPKIN, "opentelemetry": OPENTELEMETRY}
DEFAULT_PROVIDERS = {"tracing", "metrics", "accessLogging"}

# kubernetes-sigs/kind pkg/apis/config/v1alpha4/types.go
KIND_CLUSTER = {"kind", "apiVersion", "name", "nodes", "networking", "featureGates", "runtimeConfig",
                "kubeadmConfigPatches", "kubeadmConfigPatchesJSON6902", "containerdConfigPatches",
                "containerdConfigPatchesJSON6902"}
KIND_NODE = {"role", "image", "labels", "extraMounts", "extraPortMappings", "gpus", "kubeadmConfigPatches",
             "kubeadmConfigPatchesJSON6902"}
KIND_PORT_MAPPING = {"containerPort", "hostPort", "listenAddress", "protocol"}
KIND_NETWORKING = {"ipFamily", "apiServerPort", "apiServerAddress", "podSubnet", "serviceSubnet",
                   "disableDefaultCNI", "kubeProxyMode", "dnsSearch"}


def unknown(obj, allowed, path):
    if not isinstance(obj, dict):
        return ["%s: expected a mapping, got %r" % (path, obj)]
    return ["%s.%s: unknown field" % (path, k) for k in sorted(set(obj) - allowed)]


def k8s_errors(obj, path, version):
    try:
        kubernetes_validate.validate(copy.deepcopy(obj), version, strict=True)
        return []
    except kubernetes_validate.ValidationError as e:
        return ["%s: %s" % (path, e.message)]


def check_iop_k8s(k8s, path, version):
    errs = unknown(k8s, IOP_K8S, path)
    if errs:
        return errs
    pod = {"containers": [{"name": "c", "image": "i"}]}
    for key, val in k8s.items():
        if key == "service":
            errs += k8s_errors({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": val},
                               path + ".service", version)
        elif key in IOP_K8S_POD | IOP_K8S_CONTAINER:
            spec = copy.deepcopy(pod)
            (spec if key in IOP_K8S_POD else spec["containers"][0])[key] = val
            errs += k8s_errors({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec},
                               "%s.%s" % (path, key), version)
    return errs


def check_mesh(mesh, path):
    errs = unknown(mesh, MESH, path)
    errs += unknown(mesh.get("defaultConfig", {}), PROXY_CONFIG, path + ".defaultConfig")
    for i, p in enumerate(mesh.get("extensionProviders", [])):
        ppath = "%s.extensionProviders[%d]" % (path, i)
        kinds = set(p) - {"name"}
        if not p.get("name") or len(kinds) != 1 or not kinds <= PROVIDERS:
            errs.append("%s: needs a name and exactly one provider of %s" % (ppath, sorted(PROVIDERS)))
            continue
        for kind, fields in TRACERS.items():
            if kind in p:
                t, tpath = p[kind], "%s.%s" % (ppath, kind)
                errs += unknown(t, set(fields), tpath)
                errs += ["%s.%s: expected %s" % (tpath, k, f.__name__)
                         for k, f in fields.items() if k in t and type(t[k]) is not f]
                errs += ["%s.%s: required" % (tpath, k) for k in ("service", "port") if k not in t]
                if kind == "zipkin" and t.get("traceContextOption", "USE_B3") not in ZIPKIN_TRACE_CONTEXT:
                    errs.append("%s.traceContextOption: one of %s" % (tpath, sorted(ZIPKIN_TRACE_CONTEXT)))
    defaults = mesh.get("defaultProviders", {})
    errs += unknown(defaults, DEFAULT_PROVIDERS, path + ".defaultProviders")
    errs += ["%s.defaultProviders.%s: expected a list of names" % (path, k) for k, v in defaults.items()
             if not (isinstance(v, list) and all(isinstance(n, str) for n in v))]
    return errs


def check_istio_operator(doc, k8s_version):
    spec = doc.get("spec", {})
    errs = unknown(doc, {"apiVersion", "kind", "metadata", "spec"}, "$")
    errs += unknown(spec, IOP_SPEC, "$.spec")
    errs += check_mesh(spec.get("meshConfig", {}), "$.spec.meshConfig")
    comps = spec.get("components", {})
    errs += unknown(comps, IOP_COMPONENTS, "$.spec.components")
    for name, comp in comps.items():
        if name in ("ingressGateways", "egressGateways"):
            items = [("%s[%d]" % (name, i), c, IOP_GATEWAY) for i, c in enumerate(comp)]
        else:
            items = [(name, comp, IOP_BASE if name == "base" else IOP_COMPONENT)]
        for sub, c, allowed in items:
            path = "$.spec.components." + sub
            errs += unknown(c, allowed, path)
            if "k8s" in c:
                errs += check_iop_k8s(c["k8s"], path + ".k8s", k8s_version)
    return errs


def check_kind_cluster(doc, _k8s_version):
    errs = unknown(doc, KIND_CLUSTER, "$")
    errs += unknown(doc.get("networking", {}), KIND_NETWORKING, "$.networking")
    for i, node in enumerate(doc.get("nodes", [])):
        path = "$.nodes[%d]" % i
        errs += unknown(node, KIND_NODE, path)
        if node.get("role", "control-plane") not in ("control-plane", "worker"):
            errs.append("%s.role: must be control-plane or worker" % path)
        for j, m in enumerate(node.get("extraPortMappings", [])):
            mpath = "%s.extraPortMappings[%d]" % (path, j)
            errs += unknown(m, KIND_PORT_MAPPING, mpath)
            errs += ["%s.%s: not a port number" % (mpath, k) for k in ("containerPort", "hostPort")
                     if k in m and not (isinstance(m[k], int) and 0 < m[k] < 65536)]
            if m.get("protocol", "TCP") not in ("TCP", "UDP", "SCTP"):
                errs.append("%s.protocol: must be TCP, UDP or SCTP" % mpath)
            try:
                ipaddress.ip_address(m.get("listenAddress", "0.0.0.0"))
            except ValueError:
                errs.append("%s.listenAddress: not an IP address" % mpath)
    return errs


KNOWN = {("install.istio.io/v1alpha1", "IstioOperator"): check_istio_operator,
         ("kind.x-k8s.io/v1alpha4", "Cluster"): check_kind_cluster}


# ---- cross-file references -------------------------------------------------------------------

def service_port(docs, name, namespace, port, protocol="TCP"):
    """The port entry of Service namespace/name with that port number and protocol, or None."""
    for d in docs:
        md = d.get("metadata", {})
        if d.get("kind") == "Service" and md.get("name") == name and md.get("namespace") == namespace:
            for p in d["spec"].get("ports", []):
                if p.get("port") == port and p.get("protocol", "TCP") == protocol:
                    return p
    return None


def fqdn_service(host):
    """name, namespace of <name>.<namespace>.svc.cluster.local, else None."""
    parts = host.split(".")
    return (parts[0], parts[1]) if len(parts) == 5 and parts[2:] == ["svc", "cluster", "local"] else None


def cross_checks(docs):
    """Yield (what, errors)."""
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d.get("kind"), []).append(d)
    iops = by_kind.get("IstioOperator", [])
    providers = {p["name"]: p for iop in iops
                 for p in iop["spec"].get("meshConfig", {}).get("extensionProviders", [])}

    # name -> (tracer kind, its settings) of every tracing provider
    tracers = {name: (kind, p[kind]) for name, p in providers.items() for kind in TRACERS if kind in p}
    errs = []
    for name, (kind, t) in tracers.items():
        # Istio picks the protocol from the port name: Zipkin and OTLP/HTTP post HTTP, OTLP/gRPC needs HTTP/2.
        prefix = "grpc" if kind == "opentelemetry" and "http" not in t else "http"
        svc = fqdn_service(t["service"])
        port = svc and service_port(docs, svc[0], svc[1], t["port"])
        if not port:
            errs.append("provider %s: no Service port for %s:%s" % (name, t["service"], t["port"]))
        elif not port.get("name", "").startswith(prefix):
            errs.append("provider %s: Service port %s must be named %s-* for Istio" % (name, port.get("name"), prefix))
    yield "tracing providers -> Jaeger collector Service ports", errs

    defaults = [n for iop in iops for n in iop["spec"].get("meshConfig", {}).get("defaultProviders", {}).get("tracing", [])]
    errs = ["defaultProviders.tracing: %s is no tracing provider of meshConfig.extensionProviders" % n
            for n in defaults if n not in tracers]
    for t in by_kind.get("Telemetry", []):
        for tr in t["spec"].get("tracing", []):
            named = [p["name"] for p in tr.get("providers", [])]
            errs += ["Telemetry %s: provider %s is not in meshConfig.extensionProviders" % (t["metadata"]["name"], n)
                     for n in named if n not in tracers]
            if not named and not defaults:
                errs.append("Telemetry %s names no provider and meshConfig.defaultProviders.tracing is unset"
                            % t["metadata"]["name"])
    yield "default and Telemetry tracing providers -> meshConfig.extensionProviders", errs

    node_ports = {p.get("nodePort") for iop in iops for g in iop["spec"].get("components", {}).get("ingressGateways", [])
                  for p in g.get("k8s", {}).get("service", {}).get("ports", [])} - {None}
    errs = ["kind extraPortMappings containerPort %s is no ingress gateway nodePort %s" % (m["containerPort"],
                                                                                           sorted(node_ports))
            for c in by_kind.get("Cluster", []) for n in c.get("nodes", [])
            for m in n.get("extraPortMappings", []) if m.get("containerPort") not in node_ports]
    yield "kind port mapping -> ingress gateway NodePort", errs

    errs = []
    for dep in by_kind.get("Deployment", []):
        ns = dep["metadata"]["namespace"]
        for c in dep["spec"]["template"]["spec"]["containers"]:
            env = {e["name"]: e.get("value") for e in c.get("env", [])}
            if "JAEGER_AGENT_HOST" in env:
                svc = fqdn_service(env["JAEGER_AGENT_HOST"])
                if not (svc and service_port(docs, svc[0], svc[1], int(env.get("JAEGER_AGENT_PORT", "6831")), "UDP")):
                    errs.append("%s: JAEGER_AGENT_HOST/PORT is no UDP port of a Service (use the FQDN)" % c["name"])
            if "DOWNSTREAM_URL" in env:
                url = urllib.parse.urlsplit(env["DOWNSTREAM_URL"])
                if not service_port(docs, url.hostname, ns, url.port or 80):
                    errs.append("%s: DOWNSTREAM_URL %s is no Service port in %s" % (c["name"], url.geturl(), ns))
    yield "Deployment env -> Jaeger agent and downstream Services", errs

    classes = {c["metadata"]["name"] for c in by_kind.get("IngressClass", [])}
    errs = []
    for ing in by_kind.get("Ingress", []):
        md = ing["metadata"]
        if ing["spec"].get("ingressClassName") not in classes:
            errs.append("Ingress %s: no IngressClass %s" % (md["name"], ing["spec"].get("ingressClassName")))
        for rule in ing["spec"].get("rules", []):
            for path in rule.get("http", {}).get("paths", []):
                b = path["backend"]["service"]
                if not service_port(docs, b["name"], md["namespace"], b["port"].get("number")):
                    errs.append("Ingress %s %s: no Service port %s/%s:%s" % (
                        md["name"], path["path"], md["namespace"], b["name"], b["port"]))
    yield "Ingress -> IngressClass and Services", errs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--k8s-version", required=True, help="Kubernetes schema for the Kubernetes-typed fields")
    ap.add_argument("--skipped", action="append", default=[], metavar="FILE#N")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    docs, results = {}, []
    for fn in a.files:
        try:
            with open(fn) as f:
                docs[fn] = [d for d in yaml.safe_load_all(f) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            results.append((fn, [str(e).replace("\n", " ")]))
    if not results:  # nothing to follow references through while a file does not parse
        for ref in a.skipped:
            fn, _, idx = ref.rpartition("#")
            doc = docs[fn][int(idx)]
            check = KNOWN.get((doc.get("apiVersion"), doc.get("kind")))
            errs = (check(doc, a.k8s_version) if check
                    else ["%s %s: no check for this kind" % (doc.get("apiVersion"), doc.get("kind"))])
            results.append(("%s %s/%s" % (ref, doc.get("kind"), doc.get("metadata", {}).get("name", "-")), errs))
        results += cross_checks([d for ds in docs.values() for d in ds])
    for what, errs in results:
        print("%s %s" % ("INVALID" if errs else "OK     ", what))
        for e in errs:
            print("        " + e)
    sys.exit(1 if any(errs for _, errs in results) else 0)


if __name__ == "__main__":
    main()

"""Kubernetes manifests for a plan: per fleet entry a Deployment, a Service and a
HorizontalPodAutoscaler (and a ConfigMap with the LMCache YAML when the entry offloads its
KV cache through LMCache).

* Deployment: ``replicas`` from the plan; one container running the engine command of
  :func:`kvopt.export.engines.engine_config` (listening on 0.0.0.0:8000) in the engine's
  image of the plan's release (``plan --engine-version``; else ``:latest``); ``tp`` GPUs as the
  vendor's device-plugin resource (``nvidia.com/gpu``, ``amd.com/gpu``); startup, readiness
  and liveness probes on the engine's ``GET /health`` (vLLM, SGLang and trtllm-serve all
  serve it); a memory-backed ``/dev/shm`` for tensor parallelism (vLLM's Kubernetes guide);
  host memory requested for a CPU KV tier.
* Service: ClusterIP on port 8000, annotated for Prometheus scraping of ``/metrics``.
* HPA (autoscaling/v2): Pods metric ``<engine>_num_requests_waiting`` style (the engine's
  waiting-requests gauge, :data:`kvopt.ops.metrics.WAITING_METRIC`, with ``:`` spelled
  ``_`` as a Prometheus Adapter rule exposes it); the target is the queue a replica holds
  at its planned goodput (kvopt's prediction, Little's law: goodput x queueing time, at
  least 1); minReplicas the plan's replicas, maxReplicas ``max_replicas_factor`` x that.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from kvopt.errors import InputError
from kvopt.export import offload

PORT = 8000
IMAGES = {"vllm": "vllm/vllm-openai:latest", "sglang": "lmsysorg/sglang:latest",
          "trtllm": "nvcr.io/nvidia/tensorrt-llm/release:latest"}
# an engine release's image, tagged as the engines publish them (vllm/vllm-openai:v0.18.0,
# lmsysorg/sglang:v0.5.5.post2, nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc6.post3: images
# the aiconfigurator 0.12.0 silicon runs name, benchmarks/data/silicon_train.csv)
RELEASE_IMAGES = {"vllm": "vllm/vllm-openai:v{}", "sglang": "lmsysorg/sglang:v{}",
                  "trtllm": "nvcr.io/nvidia/tensorrt-llm/release:{}"}
GPU_RESOURCE = {"nvidia": "nvidia.com/gpu", "amd": "amd.com/gpu"}
# the engine process itself besides a CPU KV tier (Python, CUDA context, tokenizer, API
# server): kvopt's allowance for the memory request, not a measurement
ENGINE_HOST_GIB = 8
ADAPTER_RULE = ("Prometheus Adapter rule: seriesQuery '{__name__=\"METRIC\"}', "
                "name.as 'NAME', metricsQuery 'avg(<<.Series>>{<<.LabelMatchers>>}) by "
                "(<<.GroupBy>>)'")


def name_for(entry: dict[str, Any], index: int) -> str:
    """A DNS-1123 name (<= 52 characters, room for pod suffixes): kvopt-<workload>-<gpu>-tp<N>
    and the entry's index when names would collide."""
    raw = f"kvopt-{entry['workload']}-{entry['gpu']}-tp{entry['tp']}-{index}"
    text = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    text = re.sub(r"-{2,}", "-", text)
    return text[:52].rstrip("-")


def release_of(plan: dict[str, Any], engine: str) -> str | None:
    """The engine release the plan was made for (``--engine-version``), when the manifests
    run that engine; two-number releases spelled with three (0.19 -> 0.19.0)."""
    space = plan.get("inputs", {}).get("space") or {}
    version = space.get("engine_version")
    if version is None or (space.get("engine") or "vllm") != engine:
        return None
    m = re.fullmatch(r"(\d+\.\d+)(\.\d+)?([A-Za-z0-9.+-]*)", str(version).strip())
    if m is None:
        return None
    return m.group(1) + (m.group(2) or ".0") + m.group(3)


def image_for(engine: str, release: str | None) -> str:
    """The engine's image of ``release`` (:func:`release_of`), else its latest."""
    if release is None or engine not in RELEASE_IMAGES:
        return IMAGES[engine]
    return RELEASE_IMAGES[engine].format(release)


def _queue_target(entry: dict[str, Any], workload: dict[str, Any],
                  release: str | None = None,
                  args: dict[str, Any] | None = None) -> tuple[float, str]:
    """(waiting requests per replica to scale at, how it was found)."""
    from kvopt.errors import KvoptError

    good = entry.get("goodput_per_replica_rps")
    if not good:
        return 1.0, "no goodput in the plan: 1 waiting request"
    lengths: dict[str, Any] = {}
    for kind in ("input", "output"):
        v = str(workload[f"{kind}_len"])
        lengths[f"{kind}_len" if v.isdigit() else f"{kind}_len_dist"] = (
            int(v) if v.isdigit() else v)
    try:
        from kvopt import api

        est = api.estimate(model=entry["model"], gpu=entry["gpu"], tp=int(entry["tp"]),
                           ep=int(entry.get("ep", 1)), dp=int(entry.get("dp", 1)),
                           pp=int(entry.get("pp", 1)),
                           weights=entry["weights"], kv_dtype=entry["kv_dtype"],
                           engine=entry.get("engine") or "vllm", rps=float(good),
                           engine_version=release,
                           engine_args={**(args or {}),
                                        "max_num_seqs": int(entry["max_batch"])}, **lengths)
        queue_ms = est.to_dict()["latency"].get("queue_ms") or 0.0
    except KvoptError as exc:
        return 1.0, f"kvopt could not predict the queue ({exc}): 1 waiting request"
    q = float(good) * queue_ms / 1e3
    return max(1.0, round(q, 1)), (f"kvopt's queue at the goodput {float(good):.3g} req/s: "
                                   f"{float(good):.3g} x {queue_ms:.3g} ms = {q:.2f}")


def manifests(plan: dict[str, Any], *, engine: str, image: str | None = None,
              model_path: str | None = None, max_replicas_factor: float = 2.0,
              offload_connector: str = offload.DEFAULT_CONNECTOR,
              namespace: str | None = None) -> list[dict[str, Any]]:
    """The Kubernetes objects for every fleet entry of ``plan``."""
    from kvopt.catalog.gpus import load_gpu
    from kvopt.export.engines import engine_config
    from kvopt.export.plans import max_lengths, plan_engine_args
    from kvopt.ops.metrics import WAITING_METRIC

    if max_replicas_factor < 1:
        raise InputError("--max-replicas-factor", max_replicas_factor, "must be >= 1")
    metric = WAITING_METRIC.get(engine, WAITING_METRIC["vllm"]).replace(":", "_")
    release = release_of(plan, engine)
    args, _ = plan_engine_args(plan, engine)
    docs: list[dict[str, Any]] = []
    for i, e in enumerate(plan["fleet"]):
        w = next(x for x in plan["inputs"]["workloads"] if x["name"] == e["workload"])
        prompt, total = max_lengths(w)
        cfg = engine_config(e, engine=engine, max_model_len=total, max_prompt_len=prompt,
                            model_path=model_path, offload_connector=offload_connector,
                            engine_args=args)
        name = name_for(e, i + 1)
        labels = {"app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "kvopt",
                  "app.kubernetes.io/component": "engine"}
        meta: dict[str, Any] = {"name": name, "labels": labels,
                "annotations": {"kvopt.io/workload": str(e["workload"]),
                                "kvopt.io/gpu": str(e["gpu"]),
                                "kvopt.io/precision": f"{e['weights']}/{e['kv_dtype']}"}}
        if release is not None:
            meta["annotations"]["kvopt.io/engine-version"] = release
        if namespace:
            meta["namespace"] = namespace
        tp = int(e["tp"]) * int(e.get("dp", 1)) * int(e.get("pp", 1))  # GPUs of one replica
        card = load_gpu(e["gpu"])
        if tp > card.max_gpus_per_node:
            raise InputError("plan", f"fleet entry {e['workload']!r}", f"a replica of {tp} "
                             f"GPUs spans NVLink domains of {card.max_gpus_per_node}: one pod "
                             "cannot hold it (multi-node serving, e.g. LeaderWorkerSet, is "
                             "not generated)", "use the engine launch configs (--format vllm, "
                             "sglang or trtllm) on each node")
        vendor = card.vendor
        resource = GPU_RESOURCE.get(vendor)
        if resource is None:
            raise InputError("gpu", e["gpu"], f"no Kubernetes device resource for vendor "
                             f"{vendor}", "use an NVIDIA or AMD GPU")
        gib = offload.check(e.get("kv_offload_gib") or 0.0)
        resources: dict[str, Any] = {"limits": {resource: tp}, "requests": {resource: tp}}
        if gib > 0:
            resources["requests"]["memory"] = f"{math.ceil(gib) + ENGINE_HOST_GIB}Gi"
        probe = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10}
        container: dict[str, Any] = {
            "name": "engine", "image": image or image_for(engine, release),
            "command": [*cfg.command, "--host", "0.0.0.0", "--port", str(PORT)],
            "ports": [{"name": "http", "containerPort": PORT}],
            "resources": resources,
            # model loading takes minutes: up to 30 min before liveness applies
            "startupProbe": {**probe, "failureThreshold": 180},
            "readinessProbe": {**probe, "failureThreshold": 3},
            "livenessProbe": {**probe, "failureThreshold": 6}}
        env = dict(cfg.env)
        volumes: list[dict[str, Any]] = []
        mounts: list[dict[str, Any]] = []
        if tp > 1:
            volumes.append({"name": "shm", "emptyDir": {"medium": "Memory",
                                                        "sizeLimit": "16Gi"}})
            mounts.append({"name": "shm", "mountPath": "/dev/shm"})
        if gib > 0 and engine == "vllm" and offload_connector == "lmcache":
            cm = f"{name}-lmcache"
            docs.append({"apiVersion": "v1", "kind": "ConfigMap",
                         "metadata": {**meta, "name": cm},
                         "data": {"lmcache.yaml": offload.lmcache_yaml(gib, tp=tp)}})
            volumes.append({"name": "lmcache", "configMap": {"name": cm}})
            mounts.append({"name": "lmcache", "mountPath": "/etc/lmcache", "readOnly": True})
        if env:
            container["env"] = [{"name": k, "value": v} for k, v in env.items()]
        if mounts:
            container["volumeMounts"] = mounts
        pod: dict[str, Any] = {"containers": [container]}
        if volumes:
            pod["volumes"] = volumes
        replicas = int(e["replicas"])
        docs.append({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
                     "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                              "template": {"metadata": {"labels": labels}, "spec": pod}}})
        docs.append({"apiVersion": "v1", "kind": "Service", "metadata": {
            **meta, "annotations": {**meta["annotations"], "prometheus.io/scrape": "true",
                                    "prometheus.io/port": str(PORT),
                                    "prometheus.io/path": "/metrics"}},
            "spec": {"selector": labels, "ports": [
                {"name": "http", "port": PORT, "targetPort": "http"}]}})
        same = (e.get("engine") or "vllm") == engine
        target, why = _queue_target(e, w, release if same else None, args if same else None)
        docs.append({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
                     "metadata": {**meta, "annotations": {
                         **meta["annotations"], "kvopt.io/queue-target": why,
                         "kvopt.io/metric": ADAPTER_RULE.replace("METRIC", WAITING_METRIC.get(
                             engine, WAITING_METRIC["vllm"])).replace("NAME", metric)}},
                     "spec": {"scaleTargetRef": {"apiVersion": "apps/v1",
                                                 "kind": "Deployment", "name": name},
                              "minReplicas": replicas,
                              "maxReplicas": max(replicas, math.ceil(
                                  replicas * max_replicas_factor)),
                              "metrics": [{"type": "Pods", "pods": {
                                  "metric": {"name": metric},
                                  "target": {"type": "AverageValue",
                                             "averageValue": _quantity(target)}}}]}})
    return docs


def _quantity(x: float) -> str:
    """A Kubernetes quantity: whole numbers plain, else milli-units (1.5 -> 1500m)."""
    return str(int(x)) if float(x).is_integer() else f"{round(x * 1000)}m"


class _Dumper(yaml.SafeDumper):
    """Plain YAML for kubectl: no anchors, multi-line strings as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _text)


def dump(doc: dict[str, Any]) -> str:
    return str(yaml.dump(doc, Dumper=_Dumper, sort_keys=False))


def render(plan: dict[str, Any], **kw: Any) -> str:
    """The manifests as one multi-document YAML (``kubectl apply -f``)."""
    docs = manifests(plan, **kw)
    head = ("# Kubernetes manifests written by kvopt from a kvopt.plan/1 (kvopt export --format "
            "k8s).\n# The HPAs scale on the engine's waiting requests through a custom "
            "metrics adapter:\n# see each HPA's kvopt.io/metric annotation.\n")
    return head + "---\n".join(dump(d) for d in docs)

"""Kubernetes manifests (validated against the Kubernetes schemas by kubernetes-validate)
and KV offload artifacts (LMCache YAML, vLLM --kv-transfer-config, SGLang HiCache,
TensorRT-LLM host cache) from a plan's kv_offload_gib."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kvopt.export import load_plan, render
from kvopt.export.engines import engine_config
from kvopt.export.k8s import manifests, name_for
from kvopt.units import GIB


def _variant(plan: dict, **entry) -> dict:
    return {**plan, "fleet": [{**plan["fleet"][0], **entry}]}


def _validate(docs: list[dict]) -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    for d in docs:
        kubernetes_validate.validate(d, version, strict=True)  # raises on any problem


@pytest.mark.parametrize("entry, engine, connector", [
    ({}, "vllm", "lmcache"),
    ({"tp": 2, "replicas": 3, "kv_offload_gib": 64.0}, "vllm", "lmcache"),
    ({"tp": 4, "kv_offload_gib": 32.0}, "vllm", "native"),
    ({"gpu": "MI300X", "tp": 1}, "vllm", "lmcache"),
    ({"tp": 2, "kv_offload_gib": 16.0}, "sglang", "lmcache"),
    ({"kv_offload_gib": 8.0}, "trtllm", "lmcache"),
], ids=["tp1", "tp2-lmcache", "tp4-native", "amd", "sglang-hicache", "trtllm-host"])
def test_manifests_validate_and_follow_the_plan(plan_dict, entry, engine, connector) -> None:
    plan = _variant(plan_dict, **entry)
    e = plan["fleet"][0]
    docs = manifests(plan, engine=engine, offload_connector=connector)
    _validate(docs)
    kinds = [d["kind"] for d in docs]
    lmcache = engine == "vllm" and connector == "lmcache" and e.get("kv_offload_gib")
    assert kinds == (["ConfigMap"] if lmcache else []) + [
        "Deployment", "Service", "HorizontalPodAutoscaler"]
    dep, svc, hpa = docs[-3:]
    name = name_for(e, 1)
    assert dep["metadata"]["name"] == svc["metadata"]["name"] == name
    assert dep["spec"]["replicas"] == e["replicas"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    # the engine command is the engine export's, listening on the service port
    cfg = engine_config(e, engine=engine, max_model_len=600, max_prompt_len=500,
                        offload_connector=connector)
    assert c["command"] == [*cfg.command, "--host", "0.0.0.0", "--port", "8000"]
    gpu_key = "amd.com/gpu" if e["gpu"] == "MI300X" else "nvidia.com/gpu"
    assert c["resources"]["limits"] == {gpu_key: e["tp"]}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]
    assert ({"name": "shm", "mountPath": "/dev/shm"} in c.get("volumeMounts", [])) == (
        e["tp"] > 1)
    gib = e.get("kv_offload_gib")
    assert ("memory" in c["resources"]["requests"]) == bool(gib)
    if gib:
        assert int(c["resources"]["requests"]["memory"][:-2]) >= gib
    # the HPA scales the Deployment on the engine's waiting requests, from the plan's count
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": name}
    assert spec["minReplicas"] == e["replicas"] <= spec["maxReplicas"]
    metric = spec["metrics"][0]["pods"]["metric"]["name"]
    assert metric == ("sglang_num_queue_reqs" if engine == "sglang"
                      else "vllm_num_requests_waiting")
    assert float(spec["metrics"][0]["pods"]["target"]["averageValue"].rstrip("m")) > 0
    if lmcache:
        cm = docs[0]
        lm = yaml.safe_load(cm["data"]["lmcache.yaml"])
        assert lm == {"chunk_size": 256, "local_cpu": True,
                      "max_local_cpu_size": round(gib * GIB / 1e9 / e["tp"], 3)}
        assert {"name": "LMCACHE_CONFIG_FILE", "value": "/etc/lmcache/lmcache.yaml"} in c["env"]
        assert pod["volumes"][-1]["configMap"]["name"] == cm["metadata"]["name"]


def test_an_invalid_manifest_is_caught_by_the_validator(plan_dict) -> None:
    """The validation above can fail: a Deployment without its selector is rejected."""
    import kubernetes_validate

    dep = manifests(plan_dict, engine="vllm")[0]
    del dep["spec"]["selector"]
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate([dep])


def test_export_k8s_cli_is_multi_document_yaml(run_cli, plan_file, tmp_path: Path) -> None:
    out = tmp_path / "deploy.yaml"
    res = run_cli("export", str(plan_file), "--format", "k8s", "--output", str(out),
                  "--image", "registry.local/vllm:0.1", "--namespace", "llm",
                  "--max-replicas-factor", "3")
    assert res.exit_code == 0, res.output
    docs = list(yaml.safe_load_all(out.read_text()))
    _validate(docs)
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    assert {d["metadata"]["namespace"] for d in docs} == {"llm"}
    assert docs[0]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.local/vllm:0.1")
    assert docs[2]["spec"]["maxReplicas"] == 3 * docs[0]["spec"]["replicas"]
    assert "&id" not in out.read_text()  # no YAML anchors


def test_plan_offload_flows_to_the_exports(run_cli, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    res = run_cli("plan", "--model", "Llama-3.1-8B", "--rps", "2", "--input-len", "500",
                  "--output-len", "100", "--gpu", "H100-SXM", "--tp-options", "1",
                  "--precisions", "fp8/fp8", "--batches", "64", "--no-explain",
                  "--kv-offload-gib", "48", "--output", str(out))
    assert res.exit_code == 0, res.output
    plan = load_plan(out)  # validates against the plan schema
    assert plan["fleet"][0]["kv_offload_gib"] == 48.0
    assert plan["inputs"]["space"]["kv_offload_gib"] == 48.0
    text = render(plan, "lmcache", lmcache_chunk_size=512)
    docs = list(yaml.safe_load_all(text))
    assert docs == [{"chunk_size": 512, "local_cpu": True,
                     "max_local_cpu_size": round(48 * GIB / 1e9, 3)}]
    assert '"kv_connector":"LMCacheConnectorV1"' in text
    vllm = render(plan, "vllm", offload_connector="native")
    want = {"kv_connector": "OffloadingConnector", "kv_role": "kv_both",
            "kv_connector_extra_config": {"cpu_bytes_to_use": 48 * GIB}}
    flag = vllm.split("--kv-transfer-config ")[1].splitlines()[0].strip().strip("'")
    assert json.loads(flag) == want
    assert "--enable-hierarchical-cache" in render(plan, "sglang")
    assert f"host_cache_size: {48 * GIB}" in render(plan, "trtllm")


def test_offload_errors_are_one_line(run_cli, plan_file) -> None:
    res = run_cli("export", str(plan_file), "--format", "lmcache")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1
    assert "no fleet entry offloads its KV cache" in res.stderr
    assert "--kv-offload-gib" in res.stderr
    res = run_cli("plan", "--model", "Llama-3.1-8B", "--rps", "2", "--input-len", "5",
                  "--output-len", "5", "--kv-offload-gib", "-1")
    assert res.exit_code == 2 and "--kv-offload-gib" in res.stderr
    with pytest.raises(Exception, match="kv_offload_gib"):
        engine_config({**_entry(), "kv_offload_gib": "lots"}, engine="vllm",
                      max_model_len=600)


def _entry() -> dict:
    return {"model": "Llama-3.1-8B", "gpu": "H100-SXM", "tp": 1, "weights": "bf16",
            "kv_dtype": "bf16", "max_batch": 64}


def _with_release(plan: dict, engine: str, version: str | None) -> dict:
    space = {**plan["inputs"].get("space", {}), "engine": engine, "engine_version": version}
    if version is None:
        del space["engine_version"]
    return {**plan, "inputs": {**plan["inputs"], "space": space}}


@pytest.mark.parametrize("engine, version, image", [
    ("vllm", "0.19.0", "vllm/vllm-openai:v0.19.0"),
    ("vllm", "0.19", "vllm/vllm-openai:v0.19.0"),  # kvopt's rule: 0.19 is 0.19.0
    ("sglang", "0.5.9", "lmsysorg/sglang:v0.5.9"),
    ("trtllm", "1.2.0rc6.post3", "nvcr.io/nvidia/tensorrt-llm/release:1.2.0rc6.post3"),
    ("vllm", None, "vllm/vllm-openai:latest"),
], ids=["vllm", "two-numbers", "sglang", "trtllm-rc", "no-release"])
def test_manifests_pin_the_plans_engine_release(plan_dict, engine, version, image) -> None:
    """A plan made for an engine release (plan --engine-version) runs that release's image,
    tagged as the engine publishes it, and says so on its objects; --image still wins."""
    plan = _with_release(plan_dict, engine, version)
    docs = manifests(plan, engine=engine)
    _validate(docs)
    dep = docs[-3]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == image
    pinned = image.rsplit(":", 1)[1].lstrip("v") if version else None
    assert dep["metadata"]["annotations"].get("kvopt.io/engine-version") == pinned
    custom = manifests(plan, engine=engine, image="registry.local/e:1")
    assert custom[-3]["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "registry.local/e:1")


def test_a_release_of_another_engine_is_not_pinned(plan_dict) -> None:
    """Exporting a vLLM plan's release for SGLang pods (--engine sglang) keeps SGLang's
    latest image: the release number belongs to vLLM."""
    plan = _with_release(plan_dict, "vllm", "0.19.0")
    dep = manifests(plan, engine="sglang")[-3]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == (
        "lmsysorg/sglang:latest")
    assert "kvopt.io/engine-version" not in dep["metadata"]["annotations"]


def test_a_plan_for_an_engine_without_pods_asks_for_one(run_cli, plan_dict, tmp_path) -> None:
    """A plan made for Triton's TensorRT-LLM backend (or llama.cpp) has no server image kvopt
    writes pods for: a one-line error naming the engines it does (it used to write vLLM pods
    without a word)."""
    import json

    p = tmp_path / "plan.json"
    p.write_text(json.dumps(_with_release(plan_dict, "trtllm-triton", None)))
    res = run_cli("export", str(p), "--format", "k8s")
    assert res.exit_code == 1 and res.stderr.count("\n") == 1
    assert "trtllm-triton" in res.stderr and "--engine vllm|sglang|trtllm" in res.stderr
    res = run_cli("export", str(p), "--format", "k8s", "--engine", "trtllm")
    assert res.exit_code == 0 and "tensorrt-llm/release:latest" in res.stdout

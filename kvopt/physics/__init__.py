"""Pure physics: parameters, memory, FLOPs and bytes per op, communication, roofline time.

Functions are keyword-only and work on scalars or numpy arrays; docstrings give the
equation, the units and the source. Nothing here imports a solver.

- **Parameters** (:mod:`.params`) from the config: GQA/MHA/MQA or MLA attention, gated or
  plain MLP, MoE (routed + shared experts, dense first layers), tied embeddings, biases,
  norms; checked against published counts for every catalog model (tests).
- **Memory per GPU** (:mod:`.memory`): weights with quantization overhead (FP8/INT8
  per-channel scales, AWQ/GPTQ group-128 scales and zeros = 4.156 bit/weight, NVFP4 = 4.5,
  llama.cpp Q4_K_M = 4.89; embeddings/LM head kept in 16 bit where the format does), KV bytes
  per token (MLA latent; sliding-window layers capped; KV dtype separate from weights), paged
  blocks, activations of the engine's largest step, runtime overhead, and the KV pool each
  engine leaves (vLLM/SGLang: a fraction of total memory; TensorRT-LLM: of free memory).
- **Step time** (:mod:`.ops`, :mod:`.roofline`, :mod:`.efficiency`): per op (QKV, O,
  MLP/experts, attention, element-wise, LM head) ``smoothmax(FLOPs / (peak x eff_c), bytes /
  (bandwidth x eff_m(B)))``, eff_m ramping with the bytes B one launch moves, the
  efficiencies fitted on measured kernels (``benchmarks/fit_efficiency.py`` ->
  ``models/efficiency.yaml``); attention's compute term at 0.86 of the GEMM fraction times
  ``L / (L + 604)`` for a prefill whose queries see ``L`` keys (causal FlashAttention-3 on
  H100); MoE reads only the experts a batch touches; engine per-step overhead.
- **Tensor parallelism** (:mod:`.tp`, :mod:`.comm`): heads and FFN split, two all-reduces per
  layer priced over a networkx topology (NVSwitch, xGMI mesh, PCIe with or without
  peer-to-peer), as the engine runs them (its own kernels, or plain NCCL where the engine
  falls back to it: TensorRT-LLM above its size limits, ``custom_allreduce`` in the profile).
- **Expert, attention-data and pipeline parallelism** (:mod:`.parallel`, :mod:`.parallel_ops`,
  :mod:`.expert_load`, :mod:`.collectives`): a replica of ``tp x dp x pp`` GPUs with the
  experts over ``ep`` ranks; weights per GPU, the busiest expert rank under top-k routing,
  all-gather / reduce-scatter / all-to-all and stage hand-offs over NVLink domains (up to
  NVL72) and RDMA between them, fitted on aiconfigurator 0.12.0's communication tables.
- **Precision support** (:mod:`.precision`, ``models/precision.yaml``): FP8 is native on
  Ada/Hopper/Blackwell/CDNA3, weight-only on Ampere (and kvopt says so), FP4 native only on
  Blackwell/CDNA4, INT4 always weight-only; unsupported combinations are errors.
  :mod:`.quality` gives the accuracy loss of a precision against BF16.
"""

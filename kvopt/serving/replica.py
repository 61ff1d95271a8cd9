"""A resolved replica: model x GPU x TP (x EP, attention DP, PP) x precision x engine, with
its memory budget.

Everything that does not depend on the load is computed once here: the precision, the
weights per GPU, the KV pool the engine leaves (sized for its largest step), the KV bytes
per token and per block. A replica with ``dp`` attention-data-parallel ranks is served as
one engine of ``dp`` times the slots, token budget and KV blocks of a rank (each rank has
its own scheduler and cache; the serving model splits the work evenly,
:mod:`kvopt.serving.parallel_step`).
"""

from __future__ import annotations

from dataclasses import dataclass

from kvopt.catalog.engines import EngineProfile, load_engine
from kvopt.catalog.gpus import GpuSpec, load_gpu
from kvopt.catalog.model_spec import ModelSpec
from kvopt.catalog.models import load_model
from kvopt.errors import InputError
from kvopt.physics.comm import check_allreduce
from kvopt.physics.encoder import encoder_time_s
from kvopt.physics.memory import (
    HALF_BYTES,
    activation_bytes,
    held_tokens,
    kv_bytes_for_context,
    kv_bytes_per_token,
    kv_bytes_per_token_layer,
    linear_state_bytes,
    weight_bytes_per_gpu,
)
from kvopt.physics.ops import step_ops
from kvopt.physics.parallel import Parallel, stage_layers
from kvopt.physics.precision import Precision, resolve_precision
from kvopt.physics.tp import check_tp, kv_heads_per_gpu
from kvopt.physics.vision import ImageInput, image_work
from kvopt.units import GIB, MS_PER_S, US_PER_S


def kv_pool_bytes(eng: EngineProfile, *, gpu_bytes: float, weights_bytes: float,
                  activation_bytes: float) -> float:
    """Bytes the engine leaves for the KV cache on one GPU (negative = does not fit).

    * ``total`` (vLLM, SGLang, llama.cpp): ``fraction x GPU - weights - activations``; the
      runtime overhead (CUDA context, graphs, comm buffers) lives in the ``1 - fraction``
      headroom, and only what exceeds the headroom comes out of the pool.
    * ``free_after_weights`` (TensorRT-LLM): ``fraction x (GPU - weights - activations -
      runtime)``.
    """
    overhead = eng.runtime_overhead_gib * GIB
    if eng.memory_fraction_applies_to == "free_after_weights":
        free = gpu_bytes - weights_bytes - activation_bytes - overhead
        return free * eng.memory_fraction if free > 0 else free
    headroom = (1.0 - eng.memory_fraction) * gpu_bytes
    return (eng.memory_fraction * gpu_bytes - weights_bytes - activation_bytes
            - max(0.0, overhead - headroom))


@dataclass(frozen=True, kw_only=True)
class Replica:
    """One serving replica (a TP group) and its engine's memory budget (per GPU)."""

    model: ModelSpec
    gpu: GpuSpec
    tp: int
    precision: Precision
    engine: EngineProfile
    weights_bytes: float
    activation_bytes: float  # peak transient memory of the engine's largest step
    kv_pool_bytes: float  # what is left for the KV cache (<= 0: does not fit)
    kv_bytes_per_token: float  # all layers, per GPU, below any sliding window
    kv_bytes_per_block_layer: float  # one block of one layer, per GPU
    # a speculative draft model loaded beside the model (with_draft): its weights are in
    # weights_bytes and its KV per token in the two KV sizes above, which are then this
    # multiple of the model's own
    draft_model: str = ""
    kv_scale: float = 1.0
    # parallelism beyond TP (kvopt.physics.parallel): expert-parallel ranks, attention-DP
    # ranks (the engine's slots and budget above are dp x a rank's), pipeline stages
    ep: int = 1
    dp: int = 1
    pp: int = 1
    # fixed bytes every sequence holds beside its KV: linear-attention states and the image
    # keys of cross-attention layers (per GPU)
    seq_state_bytes: float = 0.0
    images: ImageInput | None = None  # the images of every request (multimodal models)
    image_prompt_tokens: int = 0  # tokens the images add to each prompt
    cross_tokens: int = 0  # image keys per request of the cross-attention layers
    encoder_s: float = 0.0  # encoding a request's images (once, when its prompt starts)

    @property
    def fits(self) -> bool:
        return self.kv_pool_bytes > 0

    @property
    def parallel(self) -> Parallel:
        return Parallel(tp=self.tp, ep=self.ep, dp=self.dp, pp=self.pp)

    @property
    def layers_per_gpu(self) -> int:
        """Layers whose KV one GPU holds (the largest pipeline stage)."""
        return stage_layers(self.model, self.pp) if self.pp > 1 else self.model.num_layers

    @property
    def kv_capacity_tokens(self) -> int:
        """Tokens of full-attention KV the pools of the ``dp`` ranks hold (windowed layers
        hold fewer per token)."""
        return self.dp * max(0, int(self.kv_pool_bytes // self.kv_bytes_per_token))

    @property
    def kv_capacity_blocks(self) -> int:
        """Paged blocks (counted over a GPU's self-attention layers, as engines allocate
        them) the pools of the ``dp`` ranks hold."""
        per_block = self.kv_bytes_per_token * self.engine.block_size
        return self.dp * max(0, int(self.kv_pool_bytes // per_block))

    @property
    def plain_kv(self) -> bool:
        """Every self-attention layer keeps every token and there is no fixed state: a
        sequence of n tokens holds ceil(n / block) blocks."""
        return self.seq_state_bytes == 0 and all(k == "full" for k in self.model.kinds)

    def seq_blocks(self, tokens: float) -> float:
        """Blocks (of :attr:`kv_capacity_blocks`) one sequence holding ``tokens`` takes, not
        rounded: windowed layers at most their window + one block, plus its fixed state."""
        bs = self.engine.block_size
        held = tokens if self.plain_kv else held_tokens(self.model, tokens, bs)
        return held / bs + self.seq_state_bytes / (self.kv_bytes_per_token * bs)

    def seq_bytes(self, context: float) -> float:
        """Bytes one sequence of ``context`` tokens holds on one GPU: its paged (windowed) KV
        and its fixed state."""
        kv = float(kv_bytes_for_context(self.model, context, tp=self.tp,
                                        kv_bytes=self.precision.kv_bytes_per_value,
                                        block_size=self.engine.block_size))
        if self.pp > 1:  # a pipeline stage holds its layers' KV
            kv *= self.layers_per_gpu / self.model.num_layers
        return kv * self.kv_scale + self.seq_state_bytes

    @property
    def n_gpus(self) -> int:
        return self.tp * self.dp * self.pp

    @property
    def balances_ranks(self) -> bool:
        """Whether attention-DP balancing holds prompts (TensorRT-LLM, with attention DP)."""
        return self.engine.adp_balance and self.dp > 1

    @property
    def batch_waits(self) -> bool:
        """Whether batch waiting holds prompts (TensorRT-LLM skips it under attention DP)."""
        return self.engine.batch_waits and self.dp == 1

    @property
    def request_overhead_s(self) -> float:
        """Time per request outside the engine steps (see EngineProfile)."""
        return self.engine.request_overhead_ms / MS_PER_S

    @property
    def step_overhead_s(self) -> float:
        """Engine time per step not overlapped with GPU work: host-side scheduling and, for
        engines that do not replay CUDA graphs, one launch per kernel."""
        launch = 0.0
        if not self.engine.cuda_graphs:
            ops = step_ops(self.model, tp=self.tp, precision=self.precision, seqs=1.0, new=1.0,
                           past=1.0)
            kernels = sum(op.count for op in ops) + (2 * self.model.num_layers
                                                     if self.tp > 1 else 0)
            launch = kernels * self.engine.kernel_launch_us / US_PER_S
        return self.engine.step_overhead_ms / MS_PER_S + launch


def with_draft(rep: Replica, draft: Replica) -> Replica:
    """``rep`` with a draft model loaded beside it on the same GPUs (speculative decoding):
    both models' weights, the larger of their activation peaks (they run one after the
    other), and a KV cache that holds both models' KV for every token. Memory per GPU::

        weights = W_model + W_draft        activations = max(A_model, A_draft)
        pool    = engine pool of the GPU after both
        KV/token = K_model + K_draft       (a block of the model's holds the draft's too)

    A draft that leaves no room is an InputError naming both models."""
    import dataclasses

    w_b = rep.weights_bytes + draft.weights_bytes
    act_b = max(rep.activation_bytes, draft.activation_bytes)
    pool = kv_pool_bytes(rep.engine, gpu_bytes=rep.gpu.memory_bytes, weights_bytes=w_b,
                         activation_bytes=act_b)
    if pool <= 0:
        raise InputError("spec_draft", draft.model.name,
                         f"the draft ({draft.weights_bytes / GIB:.1f} GiB per GPU) and "
                         f"{rep.model.name} ({rep.weights_bytes / GIB:.1f} GiB) do not fit "
                         f"together on {rep.tp}x {rep.gpu.id} with {rep.precision.weights} "
                         f"weights under {rep.engine.name}",
                         "use a smaller draft model, 'head' (EAGLE/MTP), more GPUs (--tp) "
                         "or a larger GPU")
    scale = (rep.kv_bytes_per_token + draft.kv_bytes_per_token) / rep.kv_bytes_per_token
    return dataclasses.replace(
        rep, weights_bytes=w_b, activation_bytes=act_b, kv_pool_bytes=pool,
        kv_bytes_per_token=rep.kv_bytes_per_token * scale,
        kv_bytes_per_block_layer=rep.kv_bytes_per_block_layer * scale,
        draft_model=draft.model.name, kv_scale=scale)


def build_replica(*, model: str | ModelSpec, gpu: str | GpuSpec, tp: int = 1,
                  weights: str | None = None, kv_dtype: str | None = None,
                  engine: str | EngineProfile = "vllm", ep: int = 1, dp: int = 1,
                  pp: int = 1, images: ImageInput | None = None) -> Replica:
    """Resolve names, validate TP (and EP, DP, PP) and precision, and size the engine's
    memory. ``weights`` None: the checkpoint's own format (its quantization_config, else
    bf16); ``images``: the images of every request (encoder time, activation memory,
    cross-attention keys)."""
    m = model if isinstance(model, ModelSpec) else load_model(model)
    g = gpu if isinstance(gpu, GpuSpec) else load_gpu(gpu)
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise InputError("tp", tp, "must be a positive integer")
    check_tp(m, tp)
    check_layout_tp(m, tp)
    check_allreduce(g, tp)
    eng = engine if isinstance(engine, EngineProfile) else load_engine(engine, g)
    w = weights or m.default_weights
    own = m.checkpoint if m.checkpoint and m.checkpoint.weights == w else None
    keep, bits = (own.keep_16bit, own.bits_per_weight) if own else ((), 0.0)
    # FP8 weights: the user's --engine-arg, the publisher's FP8 checkpoint, the engine's recipe
    if eng.fp8_scaling_set or not m.fp8_scaling:
        fp8_scaling = eng.fp8_scaling
        fp8_from = ("--engine-arg fp8_scaling" if eng.fp8_scaling_set
                    else f"{eng.name}'s FP8 recipe")
    else:
        fp8_scaling, fp8_from = m.fp8_scaling, "the model publisher's FP8 checkpoint"
    if (ep, dp, pp) != (1, 1, 1):
        from kvopt.serving.parallel_replica import build_parallel

        if images is not None and images.count > 0:
            raise InputError("images_per_request", images.count, "images are modeled on "
                             "tensor-parallel replicas only (ep = dp = pp = 1)",
                             "drop --ep/--dp/--pp, or the images")
        return build_parallel(model=m, gpu=g, par=Parallel(tp=tp, ep=ep, dp=dp, pp=pp),
                              weights=w, kv_dtype=kv_dtype, engine=eng, keep_16bit=keep,
                              bits_per_weight=bits, fp8_scaling=fp8_scaling,
                              fp8_from=fp8_from)
    prec = resolve_precision(gpu=g, weights=w, kv_dtype=kv_dtype, engine=eng.name,
                             hidden_size=m.hidden_size, keep_16bit=keep, bits_per_weight=bits,
                             fp8_scaling=fp8_scaling, fp8_weight_only=eng.fp8_weight_only,
                             fp8_from=fp8_from)
    w_b = weight_bytes_per_gpu(m, tp, prec)
    act_b = float(activation_bytes(m, tokens=eng.step_tokens, seqs=eng.max_num_seqs, tp=tp,
                                   act_bytes=prec.activation_bytes))
    state = linear_state_bytes(m, tp)
    prompt_tokens = cross = 0
    enc_s = 0.0
    if images is not None and images.count > 0:
        work = image_work(m, images.width, images.height)
        prompt_tokens = images.count * work.prompt_tokens
        cross = images.count * work.cross_tokens
        enc_s = encoder_time_s(m, g, tp=tp, work=work, images=images.count, engine=eng.name)
        # the encoder's working set and its output (kept until the prompt consumes it) for
        # one request's images, beside the LLM's own peak (they run one after the other)
        out_b = images.count * work.prompt_tokens * m.hidden_size * HALF_BYTES
        act_b = max(act_b, images.count * work.peak_bytes / tp) + out_b / tp
        state += cross * m.kinds.count("cross") * 2.0 * kv_heads_per_gpu(m, tp) * (
            m.head_dim * prec.kv_bytes_per_value)
    pool = kv_pool_bytes(eng, gpu_bytes=g.memory_bytes, weights_bytes=w_b, activation_bytes=act_b)
    return Replica(
        model=m, gpu=g, tp=tp, precision=prec, engine=eng, weights_bytes=w_b,
        activation_bytes=act_b, kv_pool_bytes=pool,
        kv_bytes_per_token=kv_bytes_per_token(m, prec.kv_bytes_per_value, tp),
        kv_bytes_per_block_layer=eng.block_size * kv_bytes_per_token_layer(
            m, tp, prec.kv_bytes_per_value),
        seq_state_bytes=state, images=images if prompt_tokens else None,
        image_prompt_tokens=prompt_tokens, cross_tokens=cross, encoder_s=enc_s,
    )


def check_layout_tp(model: ModelSpec, tp: int) -> None:
    """Linear-attention heads split over the TP group like attention heads: ``tp`` must
    divide the key and value heads (vLLM's ``divide`` in the Gated DeltaNet layer)."""
    a = model.linear
    if a is not None and (a.num_key_heads % tp or a.num_value_heads % tp):
        raise InputError("tp", tp, f"{model.name}'s linear-attention layers have "
                         f"{a.num_key_heads} key and {a.num_value_heads} value heads: tp "
                         "must divide both")

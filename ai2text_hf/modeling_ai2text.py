"""AI2Text CTC encoder: convolutional subsampling + Conformer (or Transformer) blocks + CTC head.

Travels to the Hub next to the weights (``trust_remote_code``): it imports only torch,
transformers and, with a single-dot import, its configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import CausalLMOutput

from .configuration_ai2text import AI2TextConfig, subsampled_length, subsampling_convs


def mix_ctc_losses(final: torch.Tensor, intermediate: list[torch.Tensor], weight: float) -> torch.Tensor:
    """The training loss with intermediate CTC: ``(1 - weight) * final + weight * mean(intermediate)``."""
    if not intermediate:
        return final
    return (1.0 - weight) * final + weight * torch.stack(intermediate).mean(0)


@dataclass
class AI2TextCTCOutput(CausalLMOutput):
    """``CausalLMOutput`` plus the intermediate CTC logits (training, or when labels are given)."""

    intermediate_logits: tuple[torch.Tensor, ...] | None = None


def _lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def chunk_attention_mask(frames: int, chunk_size: int, left_chunks: int, device: torch.device) -> torch.Tensor:
    """(frames, frames) bool: a frame attends to its own chunk of ``chunk_size`` frames and ``left_chunks`` chunks
    before it (all before it when -1), never to a later chunk."""
    chunk = torch.arange(frames, device=device) // chunk_size
    allowed = chunk[None, :] <= chunk[:, None]
    if left_chunks >= 0:
        allowed &= chunk[None, :] >= chunk[:, None] - left_chunks
    return allowed


def _float32_on_cpu(op: Callable[..., torch.Tensor], *inputs: torch.Tensor, **kwargs) -> torch.Tensor:
    """``op(*inputs, **kwargs)``, in float32 when CPU autocast is on, else as it is.

    With bf16 autocast on a CPU, oneDNN's bf16 gradients of attention and of the depthwise convolutions are
    slower than float32 ones and eat the gain of the bf16 matrix products (measured: docs/results.md). GPUs'
    bf16 kernels win everywhere, so there the op stays under autocast.
    """
    if inputs[0].device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        with torch.autocast("cpu", enabled=False):
            return op(*(tensor.float() for tensor in inputs), **kwargs)
    return op(*inputs, **kwargs)


def _conv_over_time(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` applied along time to a (batch, time, channels) tensor; returns (batch, time, channels).

    Runs as a 2-D convolution on a (batch, channels, 1, time) view, which is channels-last in memory
    without a copy: oneDNN's channels-last kernels run the depthwise convolutions several times faster on
    CPU, forward and backward, than its Conv1d path on the transposed tensor (docs/results.md). Same weights,
    same values.
    """
    y = _float32_on_cpu(
        F.conv2d,
        x.transpose(1, 2).unsqueeze(2),
        conv.weight.unsqueeze(2),
        bias=conv.bias,
        stride=(1, conv.stride[0]),
        padding=(0, conv.padding[0]),
        groups=conv.groups,
    )
    return y.squeeze(2).transpose(1, 2)


class ConvSubsampling(nn.Module):
    """Stride-2 Conv2d stack over (time, mel) that cuts the frame rate by ``subsampling_factor``.

    Each conv's output is zeroed past the utterance end before the next conv, so a padded batch
    sees exactly what a lone utterance sees (its own zero padding).
    """

    def __init__(self, config: AI2TextConfig):
        super().__init__()
        self.num_convs = subsampling_convs(config.subsampling_factor)
        channels = config.subsampling_channels
        # First a full 3x3 conv from the single input channel, then depthwise-separable stride-2
        # convs ("dw_striding", as NeMo's FastConformer): a full channels x channels 3x3 conv at this
        # resolution would cost more than all encoder blocks together.
        # Causal: no time padding in the convs; the input gets ``left_context`` zero frames in front instead, so
        # output frame j reads input frames up to ``factor * j`` and a stream needs only that many past frames.
        self.causal = config.causal_subsampling
        self.left_context = 2 * (config.subsampling_factor - 1) if self.causal else 0
        padding = (0, 1) if self.causal else 1
        layers: list[nn.Module] = [nn.Conv2d(1, channels, kernel_size=3, stride=2, padding=padding)]
        for _ in range(self.num_convs - 1):
            layers.append(
                nn.Sequential(
                    nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=padding, groups=channels),
                    nn.Conv2d(channels, channels, kernel_size=1),
                )
            )
        self.convs = nn.ModuleList(layers)
        self.n_mels = config.n_mels
        # Pitch columns (after the mel bins) are a contour over time, not a spectrum: their own 1-D
        # stride-2 convs bring them to the same frame rate, and they join the mel map before the projection.
        pitch = config.num_pitch_features
        self.pitch_convs = nn.ModuleList(
            nn.Conv1d(
                pitch if index == 0 else channels, channels, kernel_size=3, stride=2, padding=0 if self.causal else 1
            )
            for index in range(self.num_convs if pitch else 0)
        )
        freq = config.n_mels
        for _ in range(self.num_convs):
            freq = (freq + 1) // 2
        self.out = nn.Linear(channels * freq + (channels if pitch else 0), config.d_model)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor, context: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Subsampled frames and their lengths. ``context``: with ``causal_subsampling``, the
        ``left_context`` input frames before ``features`` (a stream's past; zeros, the default, at its start)."""
        if self.causal:
            if context is None:
                context = features.new_zeros(features.shape[0], self.left_context, features.shape[2])
            features = torch.cat([context, features], dim=1)
            lengths = lengths + self.left_context
        # Channels-last: oneDNN runs these small-channel and depthwise convs (and their gradients) about
        # three times faster in this layout; the values are the same.
        x = features[..., : self.n_mels].unsqueeze(1).contiguous(memory_format=torch.channels_last)
        pitch = features[..., self.n_mels :]  # (batch, time, pitch features)
        for index, conv in enumerate(self.convs):
            x = F.silu(_float32_on_cpu(conv, x))
            lengths = (lengths - 1) // 2 if self.causal else subsampled_length(lengths, 2)
            mask = _lengths_to_mask(lengths, x.shape[2]).to(x.dtype)
            x = x * mask[:, None, :, None]
            if self.pitch_convs:
                pitch = F.silu(_conv_over_time(self.pitch_convs[index], pitch)) * mask[:, :, None]
        batch, channels, time, freq = x.shape
        x = x.permute(0, 2, 1, 3).reshape(batch, time, channels * freq)
        if self.pitch_convs:
            x = torch.cat([x, pitch], dim=-1)
        return self.out(x), lengths


class RotaryEmbedding(nn.Module):
    """Rotary position embedding: relative positions that work with fused SDPA kernels."""

    def __init__(self, head_dim: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, length: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(length, device=device, dtype=torch.float32)
        freqs = torch.outer(positions, self.inv_freq.to(device))
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class SelfAttention(nn.Module):
    """Multi-head self-attention with RoPE on ``F.scaled_dot_product_attention``; padded keys masked."""

    def __init__(self, config: AI2TextConfig):
        super().__init__()
        self.num_heads = config.num_heads
        self.head_dim = config.d_model // config.num_heads
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.out = nn.Linear(config.d_model, config.d_model)
        self.attention_dropout = config.attention_dropout

    def forward(
        self, x: torch.Tensor, attn_mask: torch.Tensor | None, rope: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        batch, time, _ = x.shape
        q, k, v = self.qkv(x).view(batch, time, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = rope
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        dropout = self.attention_dropout if self.training else 0.0
        out = _float32_on_cpu(F.scaled_dot_product_attention, q, k, v, attn_mask=attn_mask, dropout_p=dropout)
        return self.out(out.transpose(1, 2).reshape(batch, time, -1))

    def forward_chunk(
        self,
        x: torch.Tensor,
        cache: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        key_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One chunk of a stream attending to itself and the cached left frames.

        ``cache``: (2, batch, heads, frames, head_dim), keys and values of the left frames *before* rotation, so
        positions count from the cache's start every chunk (RoPE scores depend on relative positions only) and
        never grow with the stream. ``rope``: cos/sin for the cache's and the chunk's frames. ``key_mask``:
        (batch, cache + chunk frames) bool, False for cache entries not filled yet (a fixed-size cache, as the ONNX
        step has). Returns the output and the keys and values of the cache and the chunk (the caller keeps the
        left frames it needs).
        """
        batch, time, _ = x.shape
        q, k, v = self.qkv(x).view(batch, time, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        kv = torch.cat([cache, torch.stack([k, v])], dim=3)
        cos, sin = rope
        k = kv[0] * cos + _rotate_half(kv[0]) * sin
        cos_q, sin_q = cos[cos.shape[0] - time :], sin[sin.shape[0] - time :]
        q = q * cos_q + _rotate_half(q) * sin_q
        mask = None if key_mask is None else key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, kv[1], attn_mask=mask)
        return self.out(out.transpose(1, 2).reshape(batch, time, -1)), kv


class FeedForward(nn.Module):
    def __init__(self, config: AI2TextConfig):
        super().__init__()
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.up = nn.Linear(config.d_model, config.d_ff)
        self.down = nn.Linear(config.d_ff, config.d_model)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # One dropout on the output only: a second one on the wide hidden layer costs CPU time (Bernoulli
        # sampling) for no measurable gain at this model size (docs/results.md).
        return self.dropout(self.down(F.silu(self.up(self.norm(x)))))


class ConvolutionModule(nn.Module):
    """Conformer convolution module with LayerNorm instead of BatchNorm.

    BatchNorm's batch statistics would mix padding into every utterance during training and make
    results depend on batch composition; LayerNorm does neither. Padded frames are zeroed before the
    depthwise convolution so they never leak into valid ones.
    """

    def __init__(self, config: AI2TextConfig):
        super().__init__()
        d = config.d_model
        self.norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.pointwise_in = nn.Linear(d, 2 * d)
        # Causal: the kernel's left part only, the ``kernel - 1`` past frames padded in front (or cached in a stream).
        self.causal = config.causal_conv
        self.context = config.conv_kernel_size - 1 if self.causal else 0
        padding = 0 if self.causal else config.conv_kernel_size // 2
        self.depthwise = nn.Conv1d(d, d, config.conv_kernel_size, padding=padding, groups=d)
        self.depthwise_norm = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.pointwise_out = nn.Linear(d, d)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, pad_mask: torch.Tensor | None, cache: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The module's output and, when causal, its new cache: the last ``kernel - 1`` inputs of the depthwise
        convolution (``cache``: the previous ones, (batch, kernel - 1, d_model); zeros at a stream's start)."""
        x = F.glu(self.pointwise_in(self.norm(x)), dim=-1)
        if pad_mask is not None:
            x = x.masked_fill(pad_mask.unsqueeze(-1), 0.0)
        new_cache = None
        if self.causal:
            if cache is None:
                cache = x.new_zeros(x.shape[0], self.context, x.shape[2])
            x = torch.cat([cache, x], dim=1)
            new_cache = x[:, -self.context :] if self.context else x[:, :0]
        x = _conv_over_time(self.depthwise, x)
        x = F.silu(self.depthwise_norm(x))
        return self.dropout(self.pointwise_out(x)), new_cache


class ConformerBlock(GradientCheckpointingLayer):
    """Pre-norm macaron block: ½ FF → self-attention → convolution → ½ FF, each a residual branch.

    The original Conformer also normalises each block's output. That post-norm stack needs a warmup of
    thousands of steps and, on the short CPU budgets this toolkit targets, stayed on the CTC "all blank"
    plateau where this pre-norm block was already learning (docs/results.md). The encoder normalises once
    after the last block instead.
    """

    def __init__(self, config: AI2TextConfig):
        super().__init__()
        self.ff1 = FeedForward(config)
        self.attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.attn = SelfAttention(config)
        self.conv = ConvolutionModule(config)
        self.ff2 = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        pad_mask: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor,
    ) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.dropout(self.attn(self.attn_norm(x), attn_mask, (cos, sin)))
        x = x + self.conv(x, pad_mask)[0]
        return x + 0.5 * self.ff2(x)

    def forward_chunk(
        self,
        x: torch.Tensor,
        kv_cache: torch.Tensor,
        conv_cache: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        key_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One chunk of a stream (see ``SelfAttention.forward_chunk``); returns it and the new caches."""
        x = x + 0.5 * self.ff1(x)
        out, kv = self.attn.forward_chunk(self.attn_norm(x), kv_cache, rope, key_mask)
        x = x + out
        out, conv_cache = self.conv(x, None, conv_cache)
        x = x + out
        return x + 0.5 * self.ff2(x), kv, conv_cache


class TransformerBlock(GradientCheckpointingLayer):
    """Pre-norm Transformer encoder block (``block_type: transformer``)."""

    def __init__(self, config: AI2TextConfig):
        super().__init__()
        self.attn_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.attn = SelfAttention(config)
        self.ff = FeedForward(config)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self,
        x: torch.Tensor,
        attn_mask: torch.Tensor | None,
        pad_mask: torch.Tensor | None,
        cos: torch.Tensor,
        sin: torch.Tensor,
    ) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.attn_norm(x), attn_mask, (cos, sin)))
        return x + self.ff(x)

    def forward_chunk(
        self,
        x: torch.Tensor,
        kv_cache: torch.Tensor,
        conv_cache: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        key_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One chunk of a stream (see ``SelfAttention.forward_chunk``); no convolution, so ``conv_cache`` passes."""
        out, kv = self.attn.forward_chunk(self.attn_norm(x), kv_cache, rope, key_mask)
        x = x + out
        return x + self.ff(x), kv, conv_cache


class AI2TextPreTrainedModel(PreTrainedModel):
    config_class = AI2TextConfig
    base_model_prefix = "ai2text"
    main_input_name = "input_features"
    supports_gradient_checkpointing = True
    _no_split_modules = ["ConformerBlock", "TransformerBlock"]
    # The CTC loss is a per-batch mean; the Trainer must scale it for gradient accumulation itself.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.Conv1d, nn.Conv2d)):
            nn.init.kaiming_normal_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, RotaryEmbedding):
            head_dim = self.config.d_model // self.config.num_heads
            theta = self.config.rope_theta
            module.inv_freq.copy_(1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)))


class AI2TextForCTC(AI2TextPreTrainedModel):
    """Encoder with a linear CTC head over the character vocabulary.

    ``input_features`` (batch, frames, n_mels + num_pitch_features) and a frame-level ``attention_mask`` go in;
    ``AI2TextCTCOutput(loss, logits)`` (a ``CausalLMOutput``) comes out, ``logits`` being
    (batch, frames / subsampling, vocab). Labels are padded with -100.
    """

    def __init__(self, config: AI2TextConfig):
        super().__init__(config)
        self.subsampling = ConvSubsampling(config)
        self.rotary = RotaryEmbedding(config.d_model // config.num_heads, config.rope_theta)
        block = ConformerBlock if config.block_type == "conformer" else TransformerBlock
        self.layers = nn.ModuleList(block(config) for _ in range(config.num_encoder_layers))
        self.final_norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size)
        # Self-conditioned CTC: one layer, shared by all intermediate predictions (as in ESPnet).
        self.conditioning = (
            nn.Linear(config.vocab_size, config.d_model)
            if config.interctc_layers and config.self_conditioning
            else None
        )
        self.post_init()

    def _get_feat_extract_output_lengths(self, input_lengths: torch.Tensor) -> torch.Tensor:
        """Logit frames produced for ``input_lengths`` feature frames."""
        return subsampled_length(input_lengths, self.config.subsampling_factor)

    def _spec_augment(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Random frequency and time masks (filled with 0, the normalised mean), vectorised."""
        cfg = self.config
        batch, time, columns = features.shape
        n_mels = cfg.n_mels
        device = features.device
        keep = torch.ones(batch, time, columns, dtype=torch.bool, device=device)
        mels = torch.arange(columns, device=device)  # pitch columns sit past the last mel: never freq-masked
        for _ in range(cfg.num_freq_masks):
            width = torch.randint(0, cfg.freq_mask_width + 1, (batch, 1), device=device)
            start = (torch.rand(batch, 1, device=device) * (n_mels - width + 1)).long()
            keep &= ~((mels >= start) & (mels < start + width)).unsqueeze(1)
        frames = torch.arange(time, device=device)
        max_width = (lengths.float() * cfg.time_mask_max_ratio).long().unsqueeze(1)
        for _ in range(cfg.num_time_masks):
            width = (torch.rand(batch, 1, device=device) * (max_width + 1)).long()
            start = (torch.rand(batch, 1, device=device) * (lengths.unsqueeze(1) - width + 1).clamp(min=1)).long()
            keep &= ~((frames >= start) & (frames < start + width)).unsqueeze(2)
        return features * keep.to(features.dtype)

    def _chunking(self, frames: int, chunk_size: int | None, left_chunks: int | None) -> tuple[int, int]:
        """The (chunk size, left chunks) this forward pass attends with; chunk size 0: full context. In training
        with ``dynamic_chunk_training`` both are drawn per batch unless given."""
        cfg = self.config
        if chunk_size is None and self.training and cfg.dynamic_chunk_training:
            if float(torch.rand(())) < cfg.full_context_prob:
                return 0, -1
            chunk_size = int(torch.randint(1, cfg.max_chunk_frames + 1, ()))
            if cfg.dynamic_left_chunks:
                return chunk_size, int(torch.randint(0, max(1, (frames - 1) // chunk_size + 1), ()))
            return chunk_size, cfg.attention_left_chunks
        return chunk_size or 0, cfg.attention_left_chunks if left_chunks is None else left_chunks

    def forward(
        self,
        input_features: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        chunk_size: int | None = None,
        left_chunks: int | None = None,
    ) -> AI2TextCTCOutput:
        """``chunk_size`` (output frames) and ``left_chunks``: attend within chunks as a stream does (default: full
        context, or a random chunking per batch in training with ``dynamic_chunk_training``)."""
        batch, time, columns = input_features.shape
        expected = self.config.n_mels + self.config.num_pitch_features
        if columns != expected:
            raise ValueError(
                f"input_features have {columns} columns per frame, but this model expects {expected} "
                f"({self.config.n_mels} mel bins + {self.config.num_pitch_features} pitch columns). Compute them "
                "with the model's own feature extractor (AutoFeatureExtractor.from_pretrained on its folder), or "
                "prepare the data with --pitch exactly when the model has pitch columns."
            )
        if attention_mask is None:
            lengths = torch.full((batch,), time, dtype=torch.long, device=input_features.device)
        else:
            lengths = attention_mask.sum(-1).long()
        if self.training and self.config.apply_spec_augment:
            input_features = self._spec_augment(input_features, lengths)

        x, out_lengths = self.subsampling(input_features, lengths)
        out_time = x.shape[1]
        padded = bool((out_lengths < out_time).any())
        pad_mask = ~_lengths_to_mask(out_lengths, out_time) if padded else None
        attn_mask = (~pad_mask)[:, None, None, :] if padded else None
        chunk_size, left_chunks = self._chunking(out_time, chunk_size, left_chunks)
        if chunk_size:
            chunks = chunk_attention_mask(out_time, chunk_size, left_chunks, x.device)[None, None]
            # Every frame sees itself: a padded frame whose allowed chunks are all padding would otherwise get NaN.
            itself = torch.eye(out_time, dtype=torch.bool, device=x.device)
            attn_mask = chunks if attn_mask is None else (attn_mask & chunks) | itself
        cos, sin = self.rotary(out_time, x.device, x.dtype)
        return_intermediate = self.training or labels is not None
        intermediate: list[torch.Tensor] = []
        for index, layer in enumerate(self.layers, start=1):
            x = layer(x, attn_mask, pad_mask, cos, sin)
            if index in self.config.interctc_layers and (return_intermediate or self.conditioning is not None):
                intermediate.append(self._ctc_logits(x))
                if self.conditioning is not None:
                    x = x + self.conditioning(intermediate[-1].softmax(-1))
        logits = self._ctc_logits(x)
        if padded:
            # Frames past an utterance's end become certain blanks: the ASR pipeline decodes every frame of
            # a padded batch (batch_size > 1), so padding must not turn into characters there.
            not_blank = torch.arange(logits.shape[-1], device=logits.device) != self.config.pad_token_id
            logits = logits.masked_fill(pad_mask.unsqueeze(-1) & not_blank, torch.finfo(logits.dtype).min)

        loss = None
        if labels is not None:
            if labels.max() >= self.config.vocab_size:
                raise ValueError(f"Label values must be < vocab_size ({self.config.vocab_size})")
            losses = [self._ctc_loss(frame_logits, out_lengths, labels) for frame_logits in intermediate]
            loss = mix_ctc_losses(self._ctc_loss(logits, out_lengths, labels), losses, self.config.interctc_weight)
        return AI2TextCTCOutput(
            loss=loss, logits=logits, intermediate_logits=tuple(intermediate) if return_intermediate else None
        )

    def streaming_state(self, batch: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The state of a stream at its start, for :meth:`forward_chunk`: the front end's past input frames
        (batch, left_context, features), the attention cache (layers, 2, batch, heads, 0, head_dim) and the
        convolution cache (layers, batch, kernel - 1, d_model), all zeros."""
        cfg = self.config
        device, dtype = self.lm_head.weight.device, self.lm_head.weight.dtype
        head_dim = cfg.d_model // cfg.num_heads
        context = torch.zeros(batch, self.subsampling.left_context, cfg.n_mels + cfg.num_pitch_features)
        attention = torch.zeros(len(self.layers), 2, batch, cfg.num_heads, 0, head_dim)
        conv_frames = cfg.conv_kernel_size - 1 if cfg.block_type == "conformer" else 0
        conv = torch.zeros(len(self.layers), batch, conv_frames, cfg.d_model)
        return tuple(t.to(device=device, dtype=dtype) for t in (context, attention, conv))  # type: ignore[return-value]

    def forward_chunk(
        self,
        input_features: torch.Tensor,
        context: torch.Tensor,
        attention_cache: torch.Tensor,
        conv_cache: torch.Tensor,
        cache_frames: int,
        cache_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of one chunk of a stream and the stream's new state (see :meth:`streaming_state`).

        ``input_features``: the chunk's ``subsampling_factor * chunk_size`` feature frames (fewer for the last);
        ``cache_frames``: left frames kept for attention (``left_chunks * chunk_size``); ``cache_mask``: (batch,
        cache frames) bool for a cache of fixed size whose entries are not all filled yet (False), as the ONNX
        step runs it; without it the cache grows up to ``cache_frames``. Equals :meth:`forward`
        with ``chunk_size`` and ``left_chunks`` on the whole stream; the cost of a chunk is bounded by
        ``cache_frames``, however long the stream.
        """
        if not self.config.streamable:
            raise ValueError(
                "This model reads future frames (centred convolutions) or was not trained with chunks "
                "(dynamic_chunk_training): it cannot stream. Train it with recipes/streaming-cpu.yaml."
            )
        lengths = torch.full((input_features.shape[0],), input_features.shape[1], device=input_features.device)
        new_context = torch.cat([context, input_features], dim=1)[:, -context.shape[1] :]
        x, _ = self.subsampling(input_features, lengths, context)
        time = x.shape[1]
        cos, sin = self.rotary(attention_cache.shape[4] + time, x.device, x.dtype)
        key_mask = None
        if cache_mask is not None:
            key_mask = torch.cat([cache_mask, cache_mask.new_ones(cache_mask.shape[0], time)], dim=1)
        attention, convs = [], []
        for index, layer in enumerate(self.layers):
            x, kv, conv = layer.forward_chunk(x, attention_cache[index], conv_cache[index], (cos, sin), key_mask)
            # Negative slices: a cache still shorter than cache_frames is kept whole (in the ONNX graph too).
            attention.append(kv[..., -cache_frames:, :] if cache_frames else kv[..., :0, :])
            convs.append(conv)
            if index + 1 in self.config.interctc_layers and self.conditioning is not None:
                x = x + self.conditioning(self._ctc_logits(x).softmax(-1))
        return self._ctc_logits(x), new_context, torch.stack(attention), torch.stack(convs)

    def _ctc_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """The shared CTC head, for the final and the intermediate predictions."""
        return self.lm_head(self.dropout(self.final_norm(hidden)))

    def _ctc_loss(self, logits: torch.Tensor, out_lengths: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        label_mask = labels >= 0
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32).transpose(0, 1)
        with torch.backends.cudnn.flags(enabled=False):
            return F.ctc_loss(
                log_probs,
                labels.masked_select(label_mask),
                out_lengths,
                label_mask.sum(-1),
                blank=self.config.pad_token_id,
                reduction=self.config.ctc_loss_reduction,
                zero_infinity=self.config.ctc_zero_infinity,
            )

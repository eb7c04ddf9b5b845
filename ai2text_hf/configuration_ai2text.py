"""Configuration of the AI2Text CTC encoder.

This file travels to the Hub next to the weights (``trust_remote_code``), so it imports only
transformers.
"""

from __future__ import annotations

from transformers import PretrainedConfig

BLOCK_TYPES = ("conformer", "transformer")


def subsampling_convs(factor: int) -> int:
    """Stride-2 convolutions of the front end that cut the frame rate by ``factor`` (2, 4 or 8)."""
    return factor.bit_length() - 1


def subsampled_length(frames, factor: int):
    """Frames left of ``frames`` (an int, array or tensor) after the front end: kernel 3, stride 2 and
    padding 1 in each convolution round the halving up."""
    for _ in range(subsampling_convs(factor)):
        frames = (frames + 1) // 2
    return frames


class AI2TextConfig(PretrainedConfig):
    """Hyperparameters of :class:`AI2TextForCTC`.

    The names follow the recipe keys (``d_model``, ``num_encoder_layers``,
    ``num_heads``, ``d_ff``, ``dropout``, ``n_mels``) so a recipe maps onto the config one to one.

    Args:
        vocab_size: output classes including the CTC blank (which is ``pad_token_id``).
        d_model: width of the encoder.
        num_encoder_layers: number of encoder blocks.
        num_heads: attention heads per block.
        d_ff: hidden width of the feed-forward modules.
        dropout: dropout on residual branches and before the CTC head.
        attention_dropout: dropout on attention weights.
        n_mels: number of log-mel bins the feature extractor produces.
        num_pitch_features: pitch columns after the mel bins (3 with the feature extractor's
            ``pitch=True``, 0 without); they take their own 1-D path through the front end.
        hop_length: feature hop in samples; with ``subsampling_factor`` it fixes the logit rate.
        block_type: ``"conformer"`` (macaron FF + attention + convolution) or ``"transformer"``
            (a plain pre-norm encoder).
        conv_kernel_size: depthwise convolution kernel of the Conformer convolution module.
        subsampling_factor: time reduction of the convolutional front end (4: two stride-2 convs).
        subsampling_channels: channels of the convolutional front end.
        rope_theta: base of the rotary position embedding used in self-attention.
        ctc_loss_reduction: ``"mean"`` (per-target-length mean, as torch) or ``"sum"``.
        ctc_zero_infinity: zero infinite losses (labels longer than the logits) instead of NaN gradients.
        apply_spec_augment: SpecAugment on the input features, training mode only.
        num_freq_masks / freq_mask_width: frequency masks per utterance and their maximum width (bins).
        num_time_masks / time_mask_max_ratio: time masks per utterance and the maximum width of each as
            a share of the utterance's length.
        interctc_layers: blocks (1-based) after which the CTC head also predicts (intermediate CTC,
            Lee & Watanabe 2021); empty for none. Their losses train the lower blocks directly.
        interctc_weight: share of the intermediate losses (their mean) in the training loss.
        self_conditioning: add each intermediate prediction back into the hidden states through a
            linear layer (self-conditioned CTC, Nozaki & Komatsu 2021), so the upper blocks refine
            it; this also runs at inference.
        causal_conv: pad the Conformer convolution module's depthwise convolution on the left only, so a
            frame never sees later frames through it (streaming; ``False``: centred, as before).
        causal_subsampling: pad the front end's stride-2 convolutions on the left only along time, so an
            output frame reads no later input frame (streaming without lookahead; ``False``: centred).
        dynamic_chunk_training: in training, attend within a random chunk size per batch (1 to
            ``max_chunk_frames`` output frames, or full context with ``full_context_prob``), so one model
            decodes full-context and at any chunk size (WeNet's U2 dynamic chunk training).
        max_chunk_frames: largest chunk drawn in dynamic chunk training, in output frames.
        full_context_prob: share of training batches that attend over the whole utterance.
        dynamic_left_chunks: with dynamic chunks, also draw the number of left chunks each batch sees.
        attention_left_chunks: left chunks a chunk attends to when decoding in chunks (streaming); -1:
            all of them (cost grows with the stream, so streaming needs a limit).
    """

    model_type = "ai2text_ctc"

    def __init__(
        self,
        vocab_size: int = 96,
        d_model: int = 176,
        num_encoder_layers: int = 6,
        num_heads: int = 4,
        d_ff: int = 704,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        n_mels: int = 80,
        num_pitch_features: int = 0,
        hop_length: int = 160,
        sample_rate: int = 16000,
        block_type: str = "conformer",
        conv_kernel_size: int = 15,
        subsampling_factor: int = 4,
        subsampling_channels: int = 64,
        rope_theta: float = 10000.0,
        layer_norm_eps: float = 1e-5,
        initializer_range: float = 0.02,
        ctc_loss_reduction: str = "mean",
        ctc_zero_infinity: bool = True,
        apply_spec_augment: bool = True,
        num_freq_masks: int = 2,
        freq_mask_width: int = 15,
        num_time_masks: int = 5,
        time_mask_max_ratio: float = 0.05,
        interctc_layers: list[int] | tuple[int, ...] = (),
        interctc_weight: float = 0.3,
        self_conditioning: bool = True,
        pad_token_id: int = 0,
        causal_conv: bool = False,
        causal_subsampling: bool = False,
        dynamic_chunk_training: bool = False,
        max_chunk_frames: int = 25,
        full_context_prob: float = 0.5,
        dynamic_left_chunks: bool = True,
        attention_left_chunks: int = 8,
        **kwargs,
    ):
        if block_type not in BLOCK_TYPES:
            raise ValueError(f"block_type must be one of {BLOCK_TYPES}, got {block_type!r}")
        if d_model % num_heads:
            raise ValueError(f"d_model ({d_model}) must be divisible by num_heads ({num_heads})")
        if (d_model // num_heads) % 2:
            raise ValueError("d_model / num_heads must be even for rotary position embeddings")
        if subsampling_factor not in (2, 4, 8):
            raise ValueError(f"subsampling_factor must be 2, 4 or 8, got {subsampling_factor}")
        if conv_kernel_size % 2 == 0:
            raise ValueError(f"conv_kernel_size must be odd to keep frames aligned, got {conv_kernel_size}")
        if max_chunk_frames < 1 or not 0.0 <= full_context_prob <= 1.0:
            raise ValueError(
                f"max_chunk_frames must be >= 1 and full_context_prob in [0, 1], got {max_chunk_frames} and "
                f"{full_context_prob}"
            )
        if attention_left_chunks < -1:
            raise ValueError(f"attention_left_chunks must be -1 (all) or >= 0, got {attention_left_chunks}")
        interctc_layers = sorted(set(interctc_layers or ()))
        if any(not 1 <= index < num_encoder_layers for index in interctc_layers):
            raise ValueError(
                f"interctc_layers must name blocks 1 to {num_encoder_layers - 1} (the last block feeds the final "
                f"CTC head already), got {interctc_layers}"
            )
        if interctc_layers and not 0.0 < interctc_weight < 1.0:
            raise ValueError(f"interctc_weight must be between 0 and 1 (exclusive), got {interctc_weight}")
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.num_encoder_layers = num_encoder_layers
        self.num_heads = num_heads
        self.d_ff = d_ff
        self.dropout = dropout
        self.attention_dropout = attention_dropout
        self.n_mels = n_mels
        self.num_pitch_features = num_pitch_features
        self.hop_length = hop_length
        self.sample_rate = sample_rate
        self.block_type = block_type
        self.conv_kernel_size = conv_kernel_size
        self.subsampling_factor = subsampling_factor
        self.subsampling_channels = subsampling_channels
        self.rope_theta = rope_theta
        self.layer_norm_eps = layer_norm_eps
        self.initializer_range = initializer_range
        self.ctc_loss_reduction = ctc_loss_reduction
        self.ctc_zero_infinity = ctc_zero_infinity
        self.apply_spec_augment = apply_spec_augment
        self.num_freq_masks = num_freq_masks
        self.freq_mask_width = freq_mask_width
        self.num_time_masks = num_time_masks
        self.time_mask_max_ratio = time_mask_max_ratio
        self.interctc_layers = interctc_layers
        self.interctc_weight = interctc_weight
        self.self_conditioning = self_conditioning
        self.causal_conv = causal_conv
        self.causal_subsampling = causal_subsampling
        self.dynamic_chunk_training = dynamic_chunk_training
        self.max_chunk_frames = max_chunk_frames
        self.full_context_prob = full_context_prob
        self.dynamic_left_chunks = dynamic_left_chunks
        self.attention_left_chunks = attention_left_chunks
        kwargs.pop("inputs_to_logits_ratio", None)  # derived, never stored
        super().__init__(pad_token_id=pad_token_id, **kwargs)

    @property
    def inputs_to_logits_ratio(self) -> int:
        """Audio samples per output frame.

        The ASR pipeline reads this to convert chunk strides and timestamps between samples and
        logits; deriving it keeps it from ever disagreeing with the architecture.
        """
        return self.hop_length * self.subsampling_factor

    @property
    def streamable(self) -> bool:
        """Whether the encoder can run chunk by chunk with cached state: nothing in it reads frames past a chunk
        (causal front end and convolutions) and it was trained to attend within chunks."""
        convolutions = self.causal_conv or self.block_type == "transformer"
        return self.causal_subsampling and convolutions and self.dynamic_chunk_training

    @property
    def hidden_size(self) -> int:
        """Alias used by generic transformers utilities."""
        return self.d_model

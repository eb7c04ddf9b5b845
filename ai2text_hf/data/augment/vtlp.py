"""Vocal tract length perturbation (Jaitly & Hinton, 2013): the mel axis of our log-mel features, warped.

A shorter or longer vocal tract moves the formants, not the pitch: the warp acts on the mel columns only and
leaves our pitch columns as they are. Each mel bin takes the (interpolated) log energy found at the frequency
the warp maps onto its centre, then the bins are normalised again over the utterance, as the extractor does.
That is the warp of the mel filterbank's frequency axis, read off the features already computed rather than
from a second STFT. It needs our feature extractor, whose filterbank and normalisation it reproduces.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio

from ...feature_extraction_ai2text import AI2TextFeatureExtractor

# Frequencies below this share of the Nyquist frequency scale by the warp factor; above, a second line meets
# the Nyquist frequency unchanged (Jaitly & Hinton's 4.8 kHz at 16 kHz sampling).
_BOUNDARY_SHARE = 0.6
# Grid the filter centres are located on (Hz): finer than any mel filter's width.
_GRID_HZ = 2.0


def source_frequencies(freqs: np.ndarray, alpha: float, nyquist: float) -> np.ndarray:
    """Where the content heard at ``freqs`` comes from under Jaitly & Hinton's piecewise-linear warp, which sends
    ``f`` to ``alpha × f`` up to a boundary and then runs straight to ``nyquist``: ``alpha`` > 1 moves the
    formants up, as a shorter vocal tract does."""
    boundary = _BOUNDARY_SHARE * nyquist * min(alpha, 1.0)
    return np.interp(freqs, [0.0, boundary, nyquist], [0.0, boundary / alpha, nyquist])


class VocalTractWarp:
    """Warps the mel columns of features from ``extractor`` (ours), one utterance at a time."""

    def __init__(self, extractor: object):
        if not isinstance(extractor, AI2TextFeatureExtractor):
            raise ValueError(
                f"augmentation.vtlp_prob warps the mel axis of ai2text's own log-mel features, but this model "
                f"reads its input through a {type(extractor).__name__}: set --augmentation.vtlp_prob 0 (speed_prob "
                "varies the voice too)."
            )
        self.mels = extractor.feature_size
        self.nyquist = extractor.sampling_rate / 2
        self.normalize = extractor.normalize == "utterance"
        # The centres of the extractor's own filters (its mel scale and range), where each one peaks.
        grid = np.linspace(0.0, self.nyquist, int(self.nyquist / _GRID_HZ) + 1)
        filters = torchaudio.functional.melscale_fbanks(
            n_freqs=len(grid),
            f_min=extractor.f_min,
            f_max=extractor.f_max,
            n_mels=self.mels,
            sample_rate=extractor.sampling_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        self.centres = grid[filters.argmax(0).numpy()]

    def __call__(self, features: torch.Tensor, alpha: float) -> torch.Tensor:
        """The (frames, mels) mel columns of one utterance's ``features`` (frames × columns, unpadded) as a
        vocal tract ``alpha`` times shorter would give them."""
        source = source_frequencies(self.centres, alpha, self.nyquist)
        position = np.interp(source, self.centres, np.arange(self.mels))
        low = np.clip(np.floor(position).astype(np.int64), 0, self.mels - 2)
        share = (position - low).astype(np.float32)
        # In numpy: a few small array operations, which torch would spread over (and wait for) its threads.
        mels = features[:, : self.mels].numpy()
        warped = mels[:, low] * (1 - share) + mels[:, low + 1] * share
        if self.normalize:  # the extractor's per-utterance normalisation, again after the warp
            warped -= warped.mean(0, keepdims=True)
            warped /= np.sqrt(np.square(warped).mean(0, keepdims=True) + 1e-5)
        return torch.from_numpy(warped)

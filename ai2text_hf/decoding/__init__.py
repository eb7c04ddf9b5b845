"""Turning CTC posteriors into text: greedy or beam search, n-gram LM, hotwords, confidences."""

from .beam import BeamSearchDecoder, DecodingOptions, build_decoder
from .core import CTCDecoder, DecodedUtterance
from .greedy import GreedyDecoder

__all__ = ["BeamSearchDecoder", "CTCDecoder", "DecodedUtterance", "DecodingOptions", "GreedyDecoder", "build_decoder"]

"""Corpus tools: word timings from a known transcript (``align``), cutting long recordings into training
utterances (``segment``) and dropping mislabeled rows (``clean``).

Everything here scores audio against text with a trained CTC model through :mod:`ai2text_hf.inference`;
only the CLI imports this package.
"""

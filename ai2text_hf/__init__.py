"""ai2text-hf: Vietnamese CTC speech recognition on the Hugging Face stack."""

__version__ = "0.1.0"

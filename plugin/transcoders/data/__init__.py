"""Where models and text come from: the embedded offline default or the HF hub."""

from .corpus import CorpusError, load_corpus, tokenize
from .model import EMBEDDED, ModelLoadError, load_model

__all__ = ["EMBEDDED", "CorpusError", "ModelLoadError", "load_corpus", "load_model", "tokenize"]

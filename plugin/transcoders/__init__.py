"""transcoders: SAEs, transcoders and skip transcoders with sparsify and Delphi."""

__version__ = "0.1.0"

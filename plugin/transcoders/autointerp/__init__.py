"""Automated interpretability with Delphi for SAEs, transcoders and skip transcoders."""

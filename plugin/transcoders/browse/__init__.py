"""A static latent browser for an autointerp run (`transcoders browse`)."""

from .site import BrowseError, build_site

__all__ = ["BrowseError", "build_site"]

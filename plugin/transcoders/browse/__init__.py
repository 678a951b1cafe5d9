"""A static latent browser for an autointerp run (`transcoders browse`); the builder is
`transcoders.browse.site.build_site` (kept out of this module so that the CLI starts
without importing Delphi)."""

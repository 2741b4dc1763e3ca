"""Coverage-guided fuzz targets for v2py's pure decoders (see ``fuzz/README.md``)."""

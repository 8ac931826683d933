"""The configuration schema and its loader.

It knows no provider module: each provider contributes its own source model through the
registry (`exporter.config.registry`), which the loader consults by the `provider` key.
"""

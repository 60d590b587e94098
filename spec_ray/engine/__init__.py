"""The engine: specs and protocols, construction, the packed trainer and its reference, losses and metrics.

Pure functions of (spec, seeds); nothing here knows about storage or Ray.
"""

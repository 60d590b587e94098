"""The sweep scripts, one per experiment, and the papers they make (``papers``, ``reproduce``)."""

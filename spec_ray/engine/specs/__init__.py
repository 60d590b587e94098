"""The typed spec: ``RunSpec`` and its sections, each field's role, the flat record, the protocols and presets."""

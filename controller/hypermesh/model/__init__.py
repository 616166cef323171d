"""The resource model: loading manifests, JSON Schemas, validation. Pure: no network or database."""

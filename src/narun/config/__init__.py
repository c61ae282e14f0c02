"""Configuration parsed in one place into typed values.

``narun.config.addr`` (addresses, service names) is cheap to import. The gateway's YAML
config (``narun.config.gateway``, built from ``fields`` and read by ``files``) loads
pydantic and PyYAML, so import it only where the gateway config is needed.
"""

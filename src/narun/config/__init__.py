"""Configuration parsed in one place into typed values.

``narun.config.addr`` (addresses, service names) is cheap to import; the gateway's YAML
config (``narun.config.gateway``) loads pydantic and PyYAML, so import it only where the
gateway config is needed.
"""

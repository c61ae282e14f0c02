"""The node runner: deploy apps through NATS onto nodes, supervise them, ship their logs.

See ``docs/node.md``. Layer 3: imports layers 0-2 only, never the gateway or the consumer.
"""

"""The seed's gRPC ``hello.v1.Greeter`` example, served over NATS by narun."""

"""ctsd: a crypto-trading daemon that holds exchange keys sealed and serves cts.v1 over gRPC."""

__version__ = "0.1.0"

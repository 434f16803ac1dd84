"""gRPC servicers: decode a request, call the domain, encode the answer; nothing else."""

"""The Open Inference Protocol (KServe V2): tensors, their JSON and binary encodings, and the
mapping between V2 requests and the inference core. Transport-neutral: the V2 REST routes and
the gRPC service both convert through this package and nothing here imports a web framework.
"""

"""``modelserve optimize``: convert a tree model to ONNX Runtime, prove the answers held, time it.

convert (library model → ONNX bytes) → verify (original and converted runtimes on one sample:
identical classes, probabilities within a tolerance) → time (in-process, batch 1 and 64) →
write, only if verification passed.
"""

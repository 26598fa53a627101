"""What a call to a model process costs in transport alone, three ways (``isolation: process``).

``python -m benchmarks.process_transport [--calls N] [--repeats N]``: a child that computes
nothing answers a 64x4 float64 batch with 64x3 probabilities, over

* ``pipe, raw arrays``: :mod:`modelserve.inference.process_wire` (dtype, shape and the array's
  bytes in one pipe message each way; what modelserve ships),
* ``pipe, pickle``: the batch and a :class:`~modelserve.inference.types.RawOutput` pickled,
* ``shared memory``: both arrays in :class:`multiprocessing.shared_memory.SharedMemory`
  blocks allocated once, the pipe carrying only a one-byte "go" and "done".

It prints the median round trip per call (µs) of ``--repeats`` runs of ``--calls`` calls, and
the encode + decode CPU of each way without a child (µs per call).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import pickle
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory

import numpy as np

from modelserve.inference import process_wire as wire
from modelserve.inference.types import RawOutput

ROWS, FEATURES, CLASSES = 64, 4, 3


def _probabilities() -> np.ndarray:
    return np.full((ROWS, CLASSES), 1 / CLASSES)


def _serve_raw(conn: Connection) -> None:
    answer = RawOutput(probabilities=_probabilities())
    while (message := conn.recv_bytes()) != b"":
        wire.decode_batch(message)
        conn.send_bytes(wire.encode_output(answer))


def _serve_pickle(conn: Connection) -> None:
    answer = RawOutput(probabilities=_probabilities())
    while (message := conn.recv_bytes()) != b"":
        pickle.loads(message)
        conn.send_bytes(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


def _serve_shared(conn: Connection, inputs: str, outputs: str) -> None:
    batch_block, answer_block = SharedMemory(inputs), SharedMemory(outputs)
    batch = np.ndarray((ROWS, FEATURES), np.float64, buffer=batch_block.buf)
    answer = np.ndarray((ROWS, CLASSES), np.float64, buffer=answer_block.buf)
    while conn.recv_bytes() != b"":
        batch.copy()  # what a model reads
        answer[:] = _probabilities()
        conn.send_bytes(b"d")
    del batch, answer
    batch_block.close()
    answer_block.close()


def _time_calls(call: Callable[[], object], calls: int, repeats: int) -> float:
    """Median µs per call over ``repeats`` runs."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(calls):
            call()
        runs.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(runs)


def _round_trips(calls: int, repeats: int) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    batch = np.random.default_rng(0).normal(size=(ROWS, FEATURES))
    figures: dict[str, float] = {}

    def measure(
        name: str, target: Callable[..., None], call: Callable[[Connection], object], *extra: str
    ) -> None:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=target, args=(child, *extra))
        proc.start()
        try:
            for _ in range(100):
                call(parent)
            figures[name] = _time_calls(lambda: call(parent), calls, repeats)
        finally:
            parent.send_bytes(b"")
            proc.join(10)

    def raw(conn: Connection) -> object:
        conn.send_bytes(wire.encode_batch(batch))
        return wire.decode_output(conn.recv_bytes())

    def pickled(conn: Connection) -> object:
        conn.send_bytes(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
        return pickle.loads(conn.recv_bytes())

    measure("pipe, raw arrays", _serve_raw, raw)
    measure("pipe, pickle", _serve_pickle, pickled)
    inputs = SharedMemory(create=True, size=batch.nbytes)
    outputs = SharedMemory(create=True, size=ROWS * CLASSES * 8)
    views = [
        np.ndarray(batch.shape, np.float64, buffer=inputs.buf),
        np.ndarray((ROWS, CLASSES), np.float64, buffer=outputs.buf),
    ]

    def shared(conn: Connection) -> object:
        views[0][:] = batch
        conn.send_bytes(b"g")
        conn.recv_bytes()
        return views[1].copy()

    try:
        measure("shared memory", _serve_shared, shared, inputs.name, outputs.name)
    finally:
        views.clear()  # no array may point into a block that is closed
        for block in (inputs, outputs):
            block.close()
            block.unlink()
    return figures


def _codec_cpu(calls: int, repeats: int) -> dict[str, float]:
    batch = np.random.default_rng(0).normal(size=(ROWS, FEATURES))
    answer = RawOutput(probabilities=_probabilities())

    def raw() -> object:
        wire.decode_batch(wire.encode_batch(batch))
        return wire.decode_output(wire.encode_output(answer))

    def pickled() -> object:
        pickle.loads(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
        return pickle.loads(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))

    return {
        "pipe, raw arrays": _time_calls(raw, calls, repeats),
        "pipe, pickle": _time_calls(pickled, calls, repeats),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.process_transport", description=__doc__
    )
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(
        f"load average {os.getloadavg()[0]:.2f}; {ROWS}x{FEATURES} float64 in, "
        f"{ROWS}x{CLASSES} probabilities out; median of {args.repeats} x {args.calls} calls"
    )
    codec = _codec_cpu(args.calls, args.repeats)
    print("| transport | round trip us/call | encode + decode us/call (no child) |")
    print("|---|---:|---:|")
    for name, micros in _round_trips(args.calls, args.repeats).items():
        cpu = f"{codec[name]:.1f}" if name in codec else "-"
        print(f"| {name} | {micros:.1f} | {cpu} |")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The model process of a version with ``isolation: process`` (started by :mod:`.model_process`).

``python -m modelserve.inference.process_child FD``: FD is this end of a socket pair. The
first message holds the verified files and the version's config; the runtime is built from
those bytes with the same builders a thread-isolated version uses (no path is opened again),
then every message is a batch answered with its raw output, one at a time, until the serving
process shuts its end down or dies (the read then ends), when this process exits. SIGINT
and SIGTERM are ignored: the serving process stops this one after its drain.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from multiprocessing.connection import Connection

from modelserve.errors import ModelLoadError
from modelserve.inference import process_wire as wire
from modelserve.inference.loader import build_runtime
from modelserve.inference.runtimes.base import Runtime


def main(argv: list[str]) -> int:
    # The serving process decides when this one stops (see model_process): a signal meant for
    # the server's whole group must not end a call it is still draining.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    conn = Connection(int(argv[1]))
    try:
        files, config = wire.decode_load(conn.recv_bytes())
    except EOFError:
        return 0
    try:
        runtime = build_runtime(files, config)
    except ModelLoadError as exc:
        return _refuse(conn, exc)
    except Exception as exc:
        return _refuse(conn, ModelLoadError(f"could not load {files.artifact.name}: {exc}"))
    conn.send_bytes(wire.encode_loaded(runtime.format, runtime.metadata))
    _serve(conn, runtime)
    return 0


def _refuse(conn: Connection, exc: ModelLoadError) -> int:
    with contextlib.suppress(OSError):  # the serving process is gone: nobody reads it
        conn.send_bytes(wire.encode_error(exc))
    return 1


def _serve(conn: Connection, runtime: Runtime) -> None:
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        try:
            reply = wire.encode_output(runtime.predict(wire.decode_batch(message)))
        except Exception as exc:  # the model's failure is the answer to this call
            reply = wire.encode_error(exc)
        try:
            conn.send_bytes(reply)
        except OSError:
            return


if __name__ == "__main__":
    sys.exit(main(sys.argv))

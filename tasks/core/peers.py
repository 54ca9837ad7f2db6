"""Waiting for the other workers of a cluster: standard library only, so that it also runs as the
watchdog process beside a worker blocked inside TensorFlow (`python peers.py PID TIMEOUT PEER...`).

`tasks.core.distributed.wait_for_peers` raises its `UserError` from `first_silent`; the watchdog
runs this file as a script and, when a peer stays silent past the deadline, prints the same line
and kills the worker (a process blocked in TensorFlow's C++ cannot be interrupted more gently).
"""

import os
import signal
import socket
import sys
import time


def first_silent(addresses, timeout, poll_seconds=0.5):
    """The first `host:port` that accepted no connection within `timeout` seconds (one deadline
    for all), or None once every one answered."""
    deadline = time.monotonic() + timeout
    for address in addresses:
        host, _, port = address.rpartition(":")
        while True:
            try:
                socket.create_connection((host, int(port)), timeout=2.0).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    return address
                time.sleep(poll_seconds)
    return None


def silence_message(address, timeout):
    return (f"worker {address} did not answer within {timeout:g} s; start every worker of TF_CONFIG "
            "(or raise --cluster-timeout).")


def watchdog(pid, timeout, peers):
    """Kills process `pid` (SIGKILL) after one line on stderr when a peer stays silent past `timeout`."""
    silent = first_silent(peers, timeout)
    if silent is not None:
        print(f"error: {silence_message(silent, timeout)}", file=sys.stderr, flush=True)
        os.kill(pid, signal.SIGKILL)


if __name__ == "__main__":
    watchdog(int(sys.argv[1]), float(sys.argv[2]), sys.argv[3:])

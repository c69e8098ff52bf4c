"""Ids that must be unique but need no secrecy (request and trace ids, turn and reservation keys, response ids),
made on every request's path.

From the process's Mersenne Twister, seeded from os.urandom at start and again in a forked child (the `random`
module does both), as OpenTelemetry's own trace ids are: os.urandom (uuid4, `secrets`) releases the GIL for its
system call, and under load the event loop then waits for whichever thread took the GIL to hand it back — up to
the 5 ms switch interval, several times per request. Secrets (tokens, keys, nonces) stay with `secrets`.
"""

from __future__ import annotations

import random


def random_hex() -> str:
    """32 hex digits (128 random bits), never all zeros (an invalid W3C trace id)."""
    return f"{random.getrandbits(128) or 1:032x}"

"""Readable run names (``adjective-noun-N``) and short unique ids."""

from __future__ import annotations

import secrets

__all__ = ["new_id", "new_name"]

_ADJ = (
    "amber autumn bold brave bright calm clever cosmic crimson curious daring dawn dusty eager "
    "electric fancy fearless gentle golden grand happy hidden icy jolly keen lively lucky lunar "
    "misty noble patient proud quiet rapid royal rustic serene shiny silent silver smooth snowy "
    "solar spring stellar stormy sunny swift tidy vivid warm wild wise young zesty"
).split()
_NOUN = (
    "aurora badger breeze brook canyon cedar comet cloud coral crane delta dune eagle ember falcon "
    "fern field firefly forest galaxy glacier grove harbor hawk heron island lake lantern leaf "
    "meadow meteor moon mountain nebula oak ocean orbit otter owl pebble pine planet pond rain "
    "river rocket sea shadow sky snow sparrow star stream sun thunder tree valley wave willow wind"
).split()
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def new_id(length: int = 8) -> str:
    """8 base-36 characters: 41 bits of randomness, collision-safe for millions of runs."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_name() -> str:
    return f"{secrets.choice(_ADJ)}-{secrets.choice(_NOUN)}-{secrets.randbelow(1000)}"

"""Robot hands: one constants module per hand, looked up by name."""

from unilab.hands.allegro import ALLEGRO
from unilab.hands.sharpa import SHARPA
from unilab.sim.hand_spec import HandSpec

HANDS: dict[str, HandSpec] = {ALLEGRO.name: ALLEGRO, SHARPA.name: SHARPA}


def get_hand(name: str) -> HandSpec:
    """Return the registered hand called ``name``; the error lists the valid names."""
    try:
        return HANDS[name]
    except KeyError:
        raise KeyError(f"unknown hand {name!r}; registered hands: {sorted(HANDS)}") from None


__all__ = ["ALLEGRO", "HANDS", "SHARPA", "HandSpec", "get_hand"]

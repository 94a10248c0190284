"""edge_affectsr/registry.py: name -> class maps filled by a decorator."""

from __future__ import annotations

import pytest

from edge_affectsr.errors import UserError
from edge_affectsr.registry import Registry, RegistryError


def test_a_decorated_class_is_found_by_its_name_and_left_unchanged():
    reg = Registry("widget")

    @reg.register("round")
    class Round:
        pass

    assert reg.get("round") is Round and Round.__name__ == "Round"
    assert "round" in reg and "square" not in reg


def test_an_unknown_name_is_a_user_error_listing_the_known_ones_sorted():
    reg = Registry("widget")
    for name in ("square", "round"):
        reg.register(name)(type(name, (), {}))
    with pytest.raises(RegistryError, match=r"unknown widget 'roun' \(known: round, square\)") as info:
        reg.get("roun")
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    assert list(reg) == ["round", "square"]


def test_a_name_is_registered_once():
    reg = Registry("widget")

    @reg.register("round")
    class Round:
        pass

    with pytest.raises(ValueError, match="widget 'round' is registered twice"):
        reg.register("round")(type("Other", (), {}))
    assert reg.get("round") is Round

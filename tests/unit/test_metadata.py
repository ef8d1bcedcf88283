"""The metadata's stored form, written out by hand for speed, is every field's."""

from dataclasses import asdict, fields

from shop.metadata import Actor, Metadata


def test_as_dict_holds_every_field_as_dataclasses_would():
    full = Metadata(Actor("customer", 7, "zelda"), "api", "req-1", "agg:3")
    assert full.as_dict() == asdict(full)
    assert Metadata().as_dict() == asdict(Metadata())
    # A field added later must be written out too.
    assert set(full.as_dict()) == {f.name for f in fields(Metadata)}
    assert set(full.as_dict()["actor"]) == {f.name for f in fields(Actor)}
    assert Metadata.from_dict(full.as_dict()) == full

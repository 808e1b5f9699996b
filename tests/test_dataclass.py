"""resilient's dataclass(): the frozen slotted keyword-only class @dataclass makes, compiled on first use."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from resilient import _dataclass

if TYPE_CHECKING:
    from dataclasses import dataclass as frozen_dataclass
else:
    from resilient._dataclass import dataclass as frozen_dataclass

# Module-level twins (pickle finds classes by name): one built here, one by dataclasses.


@frozen_dataclass(frozen=True, slots=True, kw_only=True)
class Point:
    """A point."""

    x: int
    label: str | None = None


@frozen_dataclass(frozen=True, slots=True, kw_only=True)
class Point3(Point):
    """A point with a depth."""

    z: float = 0.5
    tags: tuple[str, ...] = dataclasses.field(default=(), compare=False)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RefPoint:
    """A point."""

    x: int
    label: str | None = None


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RefPoint3(RefPoint):
    """A point with a depth."""

    z: float = 0.5
    tags: tuple[str, ...] = dataclasses.field(default=(), compare=False)


def fresh() -> tuple[type[Any], type[Any]]:
    """A new base and subclass, with no method compiled yet."""

    @frozen_dataclass(frozen=True, slots=True, kw_only=True)
    class Base:
        """A base."""

        a: int
        b: str | None = None

    @frozen_dataclass(frozen=True, slots=True, kw_only=True)
    class Child(Base):
        """A child adding a field."""

        c: float = 1.5

    return Base, Child


def test_other_options_go_to_dataclasses() -> None:
    """Only frozen+slots+kw_only takes the lazy path; anything else is dataclasses.dataclass's work."""
    assert _dataclass.dataclass(frozen=True) is not _dataclass.dataclass(
        frozen=True, slots=True, kw_only=True
    )

    plain: Any = _dataclass.dataclass(type("Plain", (), {"__annotations__": {"a": "int"}}), order=True)
    assert (plain(1) < plain(2), "__init__" in vars(plain)) == (True, True)


def test_frozen_makes_what_dataclass_makes() -> None:
    """Fields, parameters, slots and match args are those of the @dataclass twin."""
    assert dataclasses.is_dataclass(Point3)
    described = [(f.name, f.type, f.default, f.compare, f.kw_only) for f in dataclasses.fields(Point3)]
    reference = [(f.name, f.type, f.default, f.compare, f.kw_only) for f in dataclasses.fields(RefPoint3)]
    assert described == reference
    assert repr(vars(Point3)["__dataclass_params__"]) == repr(vars(RefPoint3)["__dataclass_params__"])
    assert (Point3.__slots__, Point3.__match_args__) == (RefPoint3.__slots__, RefPoint3.__match_args__)
    assert not hasattr(Point3(x=1), "__dict__")


def test_signature_is_dataclass_s_before_and_after_first_use() -> None:
    """inspect.signature shows the keyword-only fields before any instance exists, and after."""
    _, child = fresh()
    before = str(inspect.signature(child))
    child(a=1)
    assert (
        before
        == str(inspect.signature(child))
        == "(*, a: 'int', b: 'str | None' = None, c: 'float' = 1.5) -> None"
    )


def test_methods_behave_as_dataclass_s() -> None:
    """repr, equality and hash agree with the @dataclass twin's."""
    one, same, other = Point3(x=1, tags=("a",)), Point3(x=1), Point3(x=2)
    ref: Any = RefPoint3(x=1, tags=("a",))
    assert repr(one) == repr(ref).replace("RefPoint3", "Point3")
    assert (one == same, one != other, one == ref, hash(one) == hash(same) == hash(ref)) == (
        True,
        True,
        False,
        True,
    )
    assert Point(x=1) != Point3(x=1)


def test_instances_are_frozen() -> None:
    """Setting or deleting a field raises FrozenInstanceError, as for @dataclass."""
    p = Point(x=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        del p.x


def test_replace_pickle_and_copy() -> None:
    """dataclasses.replace, pickling and copying work as for @dataclass."""
    p = Point3(x=1, label="a", z=2.0)
    assert dataclasses.replace(p, z=3.0) == Point3(x=1, label="a", z=3.0)
    assert pickle.loads(pickle.dumps(p)) == p
    assert copy.copy(p) == copy.deepcopy(p) == p


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1,), {}), ((), {}), ((), {"a": 1, "nope": 2})],
    ids=["positional", "missing", "unknown"],
)
def test_bad_arguments_raise_type_error(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """The constructor rejects positional, missing and unknown arguments, first use or not."""
    base, _ = fresh()
    for _ in range(2):
        with pytest.raises(TypeError):
            base(*args, **kwargs)


def test_every_method_works_as_the_first_one_used() -> None:
    """Whichever method a class uses first compiles them all, for its subclasses too."""
    for use in (repr, hash, lambda p: p == p, lambda p: p):
        base, child = fresh()
        obj = object.__new__(child)
        for name, value in (("a", 1), ("b", None), ("c", 1.5)):
            object.__setattr__(obj, name, value)
        use(obj)
        assert child(a=1) == obj
        assert repr(obj).endswith(".Child(a=1, b=None, c=1.5)")
        assert repr(base(a=2)).endswith(".Base(a=2, b=None)")


def test_a_replaced_method_keeps_its_replacement(monkeypatch: pytest.MonkeyPatch) -> None:
    """A method replaced before the first use (a test's spy) is not overwritten by the compiled one."""
    base, _ = fresh()
    made: list[int] = []
    original = base.__init__

    def spy(self: Any, **kwargs: Any) -> None:
        made.append(kwargs["a"])
        original(self, **kwargs)

    monkeypatch.setattr(base, "__init__", spy)
    assert [base(a=i).a for i in range(3)] == [0, 1, 2]
    assert made == [0, 1, 2]
    assert base.__init__ is spy


def test_a_plain_dataclass_can_extend_a_frozen_class() -> None:
    """A dataclasses.dataclass subclass of a class made here works."""
    base, _ = fresh()

    @dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
    class Extra(base):  # type: ignore[valid-type,misc]
        d: int = 0

    e = Extra(a=1, d=2)
    assert repr(e).endswith(".Extra(a=1, b=None, d=2)")
    assert (e == Extra(a=1, d=2), dataclasses.replace(e, d=3).d) == (True, 3)


def test_more_than_plain_fields_is_rejected() -> None:
    """__post_init__, class variables, init=False fields and a missing docstring raise TypeError."""
    with pytest.raises(TypeError, match="plain fields"):

        @frozen_dataclass(frozen=True, slots=True, kw_only=True)
        class WithPost:
            """Has __post_init__."""

            a: int

            def __post_init__(self) -> None:
                pass

    with pytest.raises(TypeError, match="plain fields"):

        @frozen_dataclass(frozen=True, slots=True, kw_only=True)
        class WithClassVar:
            """Has a class variable."""

            a: int
            k: ClassVar[int] = 1

    with pytest.raises(TypeError, match="plain fields"):

        @frozen_dataclass(frozen=True, slots=True, kw_only=True)
        class WithHidden:
            """Has a field outside __init__."""

            a: int = dataclasses.field(default=0, init=False)

    with pytest.raises(TypeError, match="docstring"):

        @frozen_dataclass(frozen=True, slots=True, kw_only=True)
        class NoDoc:
            a: int

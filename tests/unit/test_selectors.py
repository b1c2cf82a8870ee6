"""Label and field selector parsing and matching (projections._selectors)."""

from __future__ import annotations

import pytest

from projections._selectors import (
    FieldSelector,
    LabelRequirement,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)

LABELS = {"app": "web", "tier": "fe", "idx": "i3", "n": "10", "empty": ""}


# --- label selectors: parsing ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("   ", ()),
        ("app=web", (("app", "=", ("web",)),)),
        ("app==web", (("app", "==", ("web",)),)),
        ("app!=web", (("app", "!=", ("web",)),)),
        ("app in (web,api)", (("app", "in", ("api", "web")),)),
        ("app notin (web)", (("app", "notin", ("web",)),)),
        ("app", (("app", "exists", ()),)),
        ("!app", (("app", "!", ()),)),
        ("n>5", (("n", "gt", ("5",)),)),
        ("n<5", (("n", "lt", ("5",)),)),
        ("app=", (("app", "=", ("",)),)),
        ("app=,b", (("app", "=", ("",)), ("b", "exists", ()))),
        ("app in ()", (("app", "in", ("",)),)),
        ("app in (,a)", (("app", "in", ("", "a")),)),
        ("app in (a,)", (("app", "in", ("", "a")),)),
        ("app in (a,,b)", (("app", "in", ("", "a", "b")),)),
        ("app in (b,a,b)", (("app", "in", ("a", "b")),)),
        (" app = web , ! tier ", (("app", "=", ("web",)), ("tier", "!", ()))),
        ("app\tin\t(\na\r)", (("app", "in", ("a",)),)),
        # sorted by key, as the apiserver does
        ("z=1,a=2,m", (("a", "=", ("2",)), ("m", "exists", ()), ("z", "=", ("1",)))),
        # "in" and "notin" are identifiers outside operator position
        ("in in (in,notin)", (("in", "in", ("in", "notin")),)),
        ("notin=in", (("notin", "=", ("in",)),)),
        ("example.com/app=web", (("example.com/app", "=", ("web",)),)),
        ("A_b.c-D=V_1.x-Y", (("A_b.c-D", "=", ("V_1.x-Y",)),)),
        ("x in (foo,,baz),y,z notin ()",
         (("x", "in", ("", "baz", "foo")), ("y", "exists", ()), ("z", "notin", ("",)))),
    ],
)
def test_parse_label_selector(text: str, expected: tuple[tuple[str, str, tuple[str, ...]], ...]) -> None:
    sel = parse_label_selector(text)
    assert tuple((r.key, r.operator, r.values) for r in sel.requirements) == expected
    assert sel.empty == (expected == ())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a b", "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt"),
        ("a in b", "unable to parse requirement: found 'b' expected: '('"),
        ("a in (b c)", "unable to parse requirement: found 'c', expected: ',' or ')'"),
        ("a in (b", "unable to parse requirement: found '', expected: ',' or ')'"),
        ("a in (=)", "unable to parse requirement: found '=', expected: ',', ')' or identifier"),
        ("a in (b,=)", "unable to parse requirement: found '=', expected: ',', or identifier"),
        ("a==(", "unable to parse requirement: found '(', expected: identifier"),
        ("a,", "found '', expected: identifier after ','"),
        ("a,,b", "found ',', expected: identifier after ','"),
        (",a", "found ',', expected: !, identifier, or 'end of string'"),
        ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
        ("a=b)", "found ')', expected: ',' or 'end of string'"),
        ("!a=b", "found '=', expected: ',' or 'end of string'"),
        ("!", "unable to parse requirement: found '', expected: identifier"),
        ("!!a", "unable to parse requirement: found '!', expected: identifier"),
        ("a$=b", 'unable to parse requirement: <nil>: Invalid value: "a$": name part must consist of'),
        ("/a", 'unable to parse requirement: <nil>: Invalid value: "/a": prefix part must be non-empty'),
        ("a/", 'Invalid value: "a/": name part must be non-empty'),
        ("a/b/c", 'Invalid value: "a/b/c": a qualified name must consist of'),
        ("Example.com/a", 'Invalid value: "Example.com/a": prefix part a lowercase RFC 1123 subdomain'),
        ("k" * 64, "name part must be no more than 63 characters"),
        ("a=b$", 'unable to parse requirement: values[0][a]: Invalid value: "b$": a valid label must be'),
        ("a=" + "v" * 64, "must be no more than 63 characters"),
        ("a in (ok,b$)", 'values[0][a]: Invalid value: "b$"'),  # values are sorted first
        ("n>x", "values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer"),
        ("n<1.5", "for 'Gt', 'Lt' operators, the value must be an integer"),
        ("n>-1", 'values[0][n]: Invalid value: "-1": a valid label must be'),
    ],
)
def test_parse_label_selector_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_label_selector(text)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_label_selector_error_lists_several_value_problems() -> None:
    with pytest.raises(SelectorError) as info:
        parse_label_selector("n>x-")
    message = str(info.value)
    assert message.startswith("unable to parse requirement: [values[0]: Invalid value")
    assert "values[0][n]: Invalid value" in message and message.endswith("]")


# --- label selectors: matching -----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "labels", "matched"),
    [
        ("", {}, True),
        ("", LABELS, True),
        ("app=web", LABELS, True),
        ("app=api", LABELS, False),
        ("app==web", LABELS, True),
        ("app=web", {}, False),
        ("app!=web", LABELS, False),
        ("app!=api", LABELS, True),
        ("app!=web", {}, True),  # != selects objects without the key
        ("app in (api,web)", LABELS, True),
        ("app in (api,db)", LABELS, False),
        ("app in (web)", {}, False),
        ("app notin (api,db)", LABELS, True),
        ("app notin (web)", LABELS, False),
        ("app notin (web)", {}, True),  # notin selects objects without the key
        ("app", LABELS, True),
        ("app", {}, False),
        ("!app", LABELS, False),
        ("!app", {}, True),
        ("empty=", LABELS, True),
        ("empty", LABELS, True),
        ("empty in ()", LABELS, True),
        ("app=", LABELS, False),
        ("n>5", LABELS, True),
        ("n>10", LABELS, False),
        ("n<11", LABELS, True),
        ("n<10", LABELS, False),
        ("app>5", LABELS, False),  # non-integer label value never matches gt/lt
        ("missing>5", LABELS, False),
        ("app=web,idx!=i3", LABELS, False),
        ("app=web,idx!=i4", LABELS, True),
        ("app=web,tier in (fe,be),!gone,idx", LABELS, True),
    ],
)
def test_label_selector_matches(text: str, labels: dict[str, str], matched: bool) -> None:
    assert parse_label_selector(text).matches(labels) is matched


def test_label_selector_is_frozen_and_printable() -> None:
    sel = parse_label_selector("tier in (fe, be),app=web,!x,n>3")
    assert isinstance(sel, LabelSelector)
    assert str(sel) == "app=web,n>3,tier in (be,fe),!x"
    assert parse_label_selector(str(sel)) == sel
    with pytest.raises(AttributeError):
        sel.requirements = ()  # type: ignore[misc]
    assert isinstance(sel.requirements[0], LabelRequirement)


@pytest.mark.parametrize(
    ("text", "key", "value"),
    [
        ("app=web", "app", "web"),
        ("app==web", "app", "web"),
        ("app in (web)", "app", "web"),
        ("app in (web,api)", "app", None),
        ("app!=web", "app", None),
        ("app", "app", None),
        ("tier=fe", "app", None),
    ],
)
def test_label_selector_exact(text: str, key: str, value: str | None) -> None:
    assert parse_label_selector(text).exact(key) == value


# --- field selectors ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", ()),
        ("metadata.name=a", (("metadata.name", "=", "a"),)),
        ("metadata.name==a", (("metadata.name", "=", "a"),)),
        ("metadata.name!=a", (("metadata.name", "!=", "a"),)),
        ("metadata.name=", (("metadata.name", "=", ""),)),
        ("b=1,a=2", (("a", "=", "2"), ("b", "=", "1"))),
        ("a=1,,b=2", (("a", "=", "1"), ("b", "=", "2"))),
        (r"a=x\,y", (("a", "=", "x,y"),)),
        (r"a=x\=y", (("a", "=", "x=y"),)),
        (r"a=x\\y", (("a", "=", "x\\y"),)),
        (r"a!=\,\=\\", (("a", "!=", ",=\\"),)),
        ("involvedObject.name=p,involvedObject.namespace=ns,involvedObject.kind=Pod",
         (("involvedObject.kind", "=", "Pod"), ("involvedObject.name", "=", "p"),
          ("involvedObject.namespace", "=", "ns"))),
    ],
)
def test_parse_field_selector(text: str, expected: tuple[tuple[str, str, str], ...]) -> None:
    sel = parse_field_selector(text)
    assert sel.requirements == expected
    assert sel.empty == (expected == ())
    assert sel.fields == frozenset(f for f, _, _ in expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "invalid selector: 'a'; can't understand 'a'"),
        ("a=b,c", "invalid selector: 'a=b,c'; can't understand 'c'"),
        ("a=b=c", "invalid field selector: unescaped character in value: ="),
        ("a=b,c=d=e", "invalid field selector: unescaped character in value: ="),
        (r"a=b\x", r"invalid field selector: invalid escape sequence: \x"),
        ("a=b\\", "invalid field selector: invalid escape sequence: \\"),
    ],
)
def test_parse_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_field_selector(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "fields", "matched"),
    [
        ("", {}, True),
        ("metadata.name=a", {"metadata.name": "a"}, True),
        ("metadata.name=a", {"metadata.name": "b"}, False),
        ("metadata.name==a", {"metadata.name": "a"}, True),
        ("metadata.name!=a", {"metadata.name": "a"}, False),
        ("metadata.name!=a", {"metadata.name": "b"}, True),
        ("spec.nodeName=", {}, True),  # a missing field reads as ""
        ("spec.nodeName!=", {}, False),
        ("spec.nodeName!=", {"spec.nodeName": "n1"}, True),
        ("spec.nodeName=n1", {}, False),
        (r"a=x\,y", {"a": "x,y"}, True),
        ("a=1,b!=2", {"a": "1", "b": "3"}, True),
        ("a=1,b!=2", {"a": "1", "b": "2"}, False),
    ],
)
def test_field_selector_matches(text: str, fields: dict[str, str], matched: bool) -> None:
    assert parse_field_selector(text).matches(fields.get) is matched


def test_field_selector_exact_and_str() -> None:
    sel = parse_field_selector(r"metadata.namespace=ns,metadata.name=a\,b,status.phase!=Running")
    assert sel.exact("metadata.name") == "a,b"
    assert sel.exact("status.phase") is None
    assert sel.exact("spec.nodeName") is None
    assert parse_field_selector(str(sel)) == sel
    assert FieldSelector().empty and FieldSelector().matches(lambda _: None)

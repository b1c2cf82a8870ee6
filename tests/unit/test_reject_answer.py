"""Flow control's rejection answered as kube-apiserver answers it: its priority-and-fairness filter
calls ``tooManyRequests`` (staging/src/k8s.io/apiserver/pkg/server/filters/priority-and-fairness.go):
``Retry-After``, then Go's ``http.Error``: ``text/plain; charset=utf-8``, ``X-Content-Type-Options:
nosniff`` and the message with a newline, not a Status. Every other 429 (a PodDisruptionBudget's, a
full mailbox's) is a Status in JSON, as kube's handlers write theirs."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from actors import REJECT_MESSAGE, Admission, Rejected, TooManyRequests
from actors._flowcontrol import FlowControl
from actors.messages import Request, UserInfo
from gateway._gate import error_answer, rejected, response_headers
from gateway._status import ApiResponse, status_for
from kinds import BUILTIN

BODY = b"Too many requests, please try again later.\n"
TEXT = "text/plain; charset=utf-8"


def test_a_rejection_is_kubes_plain_text() -> None:
    assert REJECT_MESSAGE.encode() + b"\n" == BODY  # fmt.Fprintln(w, "Too many requests, please try again later.")
    for retry_after_s in (1, 2, 32):
        code, body, headers = status_for(Rejected(retry_after_s))
        assert (code, body) == (429, BODY)
        assert headers == {"Retry-After": str(retry_after_s), "Content-Type": TEXT, "X-Content-Type-Options": "nosniff"}
        # The app's answer (error_answer) is the gate's (rejected), encoded once per Retry-After value.
        assert error_answer(Rejected(retry_after_s)) is rejected(retry_after_s)
        assert rejected(retry_after_s) == (code, body, headers)


@pytest.mark.parametrize("exc", [
    TooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", retry_after_s=10),
    TooManyRequests("the server is busy (resource queue is full), try again", retry_after_s=1),
    TooManyRequests(REJECT_MESSAGE, retry_after_s=1),  # the message alone does not make it flow control's
], ids=["eviction", "mailbox", "same-message"])
def test_other_429s_keep_their_status(exc: TooManyRequests) -> None:
    code, body, headers = error_answer(exc)
    assert code == 429 and headers == {"Retry-After": str(exc.retry_after_s)}  # (Content-Type: the JSON one)
    st = json.loads(body)
    assert (st["kind"], st["status"], st["reason"], st["code"]) == ("Status", "Failure", "TooManyRequests", 429)
    assert st["message"] == exc.message and st["details"] == {"retryAfterSeconds": exc.retry_after_s}


def test_the_gate_and_the_fast_path_write_one_content_type() -> None:
    adm = Admission()
    adm.schema_uid, adm.level_uid = "fs-uid", "pl-uid"
    for n in (1, 7):
        _, body, extra = rejected(n)
        out = response_headers(body, extra, "audit-1", adm)
        assert out == [(b"content-type", TEXT.encode()), (b"content-length", b"43"),
                       (b"cache-control", b"no-cache, private"), (b"retry-after", b"%d" % n),
                       (b"x-content-type-options", b"nosniff"), (b"audit-id", b"audit-1"),
                       (b"x-kubernetes-pf-flowschema-uid", b"fs-uid"), (b"x-kubernetes-pf-prioritylevel-uid", b"pl-uid")]
    _, body, extra = error_answer(TooManyRequests("busy", retry_after_s=1))
    out = response_headers(body, extra, "audit-2", adm)
    assert [v for k, v in out if k == b"content-type"] == [b"application/json"]
    assert b"x-content-type-options" not in dict(out)


async def test_flow_control_raises_its_rejection() -> None:
    """Flow control's own refusals are :class:`Rejected` (here: no room for another tenant)."""
    projection = SimpleNamespace(store=SimpleNamespace(resources={}))
    fc = FlowControl(projection, max_tenants=0)  # type: ignore[arg-type]
    cms = next(d for d in BUILTIN if (d.group, d.plural) == ("", "configmaps"))
    for tenant in ("t1", "t2", "t3"):
        req = Request(verb="list", tenant=tenant, rdef=cms, namespace="default",
                      user=UserInfo("alice", "u", ("system:authenticated",)))
        with pytest.raises(Rejected) as e:
            await fc.admit(req, Admission())
        assert status_for(e.value) == (429, BODY, {"Retry-After": "1", "Content-Type": TEXT,
                                                   "X-Content-Type-Options": "nosniff"})


def test_app_answers_have_kubes_cache_control_unless_they_set_theirs() -> None:
    """kube's ``WithCacheControl``: set before the handler runs, so a handler's own value replaces it."""
    r = ApiResponse(b"{}", status=200, content_type="application/json")
    assert r.headers.getlist("Cache-Control") == ["no-cache, private"]
    assert list(r.headers.keys()) == ["Content-Type", "Content-Length", "Cache-Control"]  # (the gate's order)
    r.headers["Cache-Control"] = "public, immutable"
    assert r.headers.getlist("Cache-Control") == ["public, immutable"]

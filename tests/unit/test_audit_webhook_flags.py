"""The --audit-webhook-* flags of ``jetkube serve`` (kube's names and defaults) and their checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway._audit_webhook import parse_duration
from gateway._cli import _parser, settings_from_args


def _kubeconfig(tmp_path: Path) -> str:
    p = tmp_path / "kc"
    p.write_text(yaml.safe_dump({"clusters": [{"name": "c", "cluster": {"server": "https://audit.example/x"}}],
                                 "users": [{"name": "u", "user": {"token": "t"}}],
                                 "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                                 "current-context": "x"}))
    return str(p)


def test_defaults_are_kubes(tmp_path: Path) -> None:
    assert settings_from_args(_parser().parse_args(["serve"])).audit_webhook is None
    o = settings_from_args(_parser().parse_args(["serve", "--audit-webhook-config-file", _kubeconfig(tmp_path)]))
    w = o.audit_webhook
    assert w is not None and w.mode == "batch"
    assert (w.batch_max_size, w.batch_max_wait_s, w.buffer_size, w.throttle_qps, w.throttle_burst,
            w.initial_backoff_s) == (400, 30.0, 10_000, 10.0, 15, 10.0)


def test_flags_and_their_checks(tmp_path: Path) -> None:
    kc = _kubeconfig(tmp_path)
    w = settings_from_args(_parser().parse_args([
        "serve", "--audit-webhook-config-file", kc, "--audit-webhook-batch-max-size", "7",
        "--audit-webhook-batch-max-wait", "500ms", "--audit-webhook-initial-backoff", "1m"])).audit_webhook
    assert w is not None and (w.batch_max_size, w.batch_max_wait_s, w.initial_backoff_s) == (7, 0.5, 60.0)
    for bad in (["--audit-webhook-batch-max-size", "0"], ["--audit-webhook-batch-max-wait", "soon"],
                ["--audit-webhook-batch-buffer-size", "10"]):
        with pytest.raises(SystemExit):
            settings_from_args(_parser().parse_args(["serve", "--audit-webhook-config-file", kc, *bad]))
    with pytest.raises(SystemExit, match="audit-webhook-config-file"):
        settings_from_args(_parser().parse_args(["serve", "--audit-webhook-config-file", str(tmp_path / "none")]))
    for mode in ("blocking", "blocking-strict"):  # kube's modes
        w = settings_from_args(_parser().parse_args([
            "serve", "--audit-webhook-config-file", kc, "--audit-webhook-mode", mode])).audit_webhook
        assert w is not None and w.mode == mode and w.blocking and w.strict == (mode == "blocking-strict")
        assert w.blocking_timeout_s == 30.0  # kube's webhook request timeout bounds a request's wait
    with pytest.raises(SystemExit):
        _parser().parse_args(["serve", "--audit-webhook-mode", "sometimes"])


def test_durations() -> None:
    assert [parse_duration(v) for v in ("30s", "500ms", "2m", "1h", "1.5")] == [30.0, 0.5, 120.0, 3600.0, 1.5]
    with pytest.raises(ValueError):
        parse_duration("later")

"""batch/v1: Jobs and CronJobs (``pkg/apis/batch/v1/defaults.go``, ``pkg/registry/batch/job``'s
generated selector, ``pkg/apis/batch/validation``), with the CronJob schedule grammar of
``robfig/cron`` v3 (``ParseStandard``), which kube uses, and its error words."""

from __future__ import annotations

import re
import zoneinfo
from typing import Any

from ._errors import Cause
from ._podspec import default_pod_template, validate_pod_template
from ._strategy import Strategy
from ._validation import field_invalid, field_required, field_unsupported
from ._workloads import (
    TemplateStrategy,
    immutable,
    immutable_selector,
    spec_of,
    sub_dict,
    validate_nonnegative,
    validate_selector_and_template,
)

__all__ = [
    "BATCH_STRATEGIES",
    "default_cron_job",
    "default_job",
    "generate_job_selector",
    "parse_cron_schedule",
]

CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME_LABEL = "job-name"
_INT32_MAX = 2**31 - 1
_CRONJOB_NAME_MAX = 52  # the Job's name gets an 11-character suffix and must stay a label


def default_job(obj: dict[str, Any]) -> None:
    """``SetDefaults_Job`` (1.33): completions and parallelism 1 unless set, backoffLimit 6,
    NonIndexed, not suspended, pods replaced when TerminatingOrFailed, manualSelector false, and
    the Job's labels from its template's when it has none."""
    spec = spec_of(obj)
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    if spec.get("parallelism") is None:
        spec["parallelism"] = 1
    if spec.get("backoffLimit") is None:
        spec["backoffLimit"] = _INT32_MAX if spec.get("backoffLimitPerIndex") is not None else 6
    template = sub_dict(spec, "template")
    labels = (template.get("metadata") or {}).get("labels") if isinstance(template, dict) else None
    meta = obj.setdefault("metadata", {})
    if labels and not meta.get("labels"):
        meta["labels"] = dict(labels)
    if spec.get("completionMode") is None:
        spec["completionMode"] = "NonIndexed"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("podReplacementPolicy") is None:
        spec["podReplacementPolicy"] = "Failed" if spec.get("podFailurePolicy") is not None else "TerminatingOrFailed"
    if spec.get("manualSelector") is None:
        spec["manualSelector"] = False
    default_pod_template(template)
    pfp = spec.get("podFailurePolicy")
    if isinstance(pfp, dict):
        for rule in pfp.get("rules") or []:
            for pattern in (rule or {}).get("onPodConditions") or []:
                if isinstance(pattern, dict) and not pattern.get("status"):
                    pattern["status"] = "True"


def generate_job_selector(obj: dict[str, Any]) -> None:
    """The Job strategy's ``generateSelector`` (unless ``manualSelector``): the template gets the
    job-name and controller-uid labels (legacy and prefixed) and the selector matches the uid.
    Needs ``metadata.uid`` and ``metadata.name``."""
    spec = spec_of(obj)
    if spec.get("manualSelector") is True:
        return
    meta = obj.get("metadata") or {}
    template = sub_dict(spec, "template")
    tmeta = template.get("metadata")
    if not isinstance(tmeta, dict):
        tmeta = template["metadata"] = {}
    labels = tmeta.get("labels")
    if not isinstance(labels, dict):
        labels = tmeta["labels"] = {}
    for key in (LEGACY_JOB_NAME_LABEL, JOB_NAME_LABEL):
        labels.setdefault(key, meta.get("name", ""))
    for key in (LEGACY_CONTROLLER_UID_LABEL, CONTROLLER_UID_LABEL):
        labels.setdefault(key, meta.get("uid", ""))
    sel = spec.get("selector")
    if not isinstance(sel, dict):
        sel = spec["selector"] = {}
    ml = sel.get("matchLabels")
    if not isinstance(ml, dict):
        ml = sel["matchLabels"] = {}
    ml.setdefault(CONTROLLER_UID_LABEL, meta.get("uid", ""))


def default_cron_job(obj: dict[str, Any]) -> None:
    """``SetDefaults_CronJob``: Allow, not suspended, 3 successful and 1 failed Jobs kept; the
    job template's pod template gets the PodSpec defaults (the JobSpec itself gets none)."""
    spec = spec_of(obj)
    if not spec.get("concurrencyPolicy"):
        spec["concurrencyPolicy"] = "Allow"
    if spec.get("suspend") is None:
        spec["suspend"] = False
    if spec.get("successfulJobsHistoryLimit") is None:
        spec["successfulJobsHistoryLimit"] = 3
    if spec.get("failedJobsHistoryLimit") is None:
        spec["failedJobsHistoryLimit"] = 1
    jt = sub_dict(spec, "jobTemplate")
    if isinstance(jt, dict):
        if isinstance(jt.get("metadata"), dict):
            jt["metadata"].setdefault("creationTimestamp", None)
        jspec = sub_dict(jt, "spec")
        if isinstance(jspec, dict):
            default_pod_template(sub_dict(jspec, "template"))


# ---- the cron grammar (robfig/cron v3, standard parser with descriptors) -------------------------

_BOUNDS = (
    ("minute", 0, 59, None),
    ("hour", 0, 23, None),
    ("dom", 1, 31, None),
    ("month", 1, 12, {m: i + 1 for i, m in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"))}),
    ("dow", 0, 6, {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}),
)
_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")
_GO_DURATION_RE = re.compile(r"[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|μs|ms|s|m|h))+|[-+]?0")


def _atoi(expr: str) -> int:
    if not re.fullmatch(r"[-+]?\d+", expr):
        raise ValueError(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax')
    n = int(expr)
    if not -(2**63) <= n < 2**63:
        raise ValueError(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": value out of range')
    if n < 0:
        raise ValueError(f"negative number ({n}) not allowed: {expr}")
    return n


def _int_or_name(expr: str, names: dict[str, int] | None) -> int:
    if names is not None and expr.lower() in names:
        return names[expr.lower()]
    return _atoi(expr)


def _check_range(expr: str, lo: int, hi: int, names: dict[str, int] | None) -> None:
    range_and_step = expr.split("/")
    low_high = range_and_step[0].split("-")
    single = len(low_high) == 1
    if low_high[0] in ("*", "?"):
        start, end = lo, hi
    else:
        start = _int_or_name(low_high[0], names)
        if len(low_high) == 1:
            end = start
        elif len(low_high) == 2:
            end = _int_or_name(low_high[1], names)
        else:
            raise ValueError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _atoi(range_and_step[1])
        if single:
            end = hi
    else:
        raise ValueError(f"too many slashes: {expr}")
    if start < lo:
        raise ValueError(f"beginning of range ({start}) below minimum ({lo}): {expr}")
    if end > hi:
        raise ValueError(f"end of range ({end}) above maximum ({hi}): {expr}")
    if start > end:
        raise ValueError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise ValueError(f"step of range should be a positive number: {expr}")


def parse_cron_schedule(schedule: str) -> None:
    """Raise ``ValueError`` with robfig/cron's words when ``schedule`` is not a standard
    5-field cron line or descriptor (``cron.ParseStandard``)."""
    spec = schedule
    if not spec:
        raise ValueError("empty spec string")
    if spec.startswith(("TZ=", "CRON_TZ=")):
        i = spec.find(" ")
        tz = spec[spec.index("=") + 1: i if i >= 0 else len(spec)]
        if not _valid_zone(tz):
            raise ValueError(f"provided bad location {tz}: unknown time zone {tz}")
        spec = spec[i:].strip() if i >= 0 else ""
    if spec.startswith("@"):
        if spec in _DESCRIPTORS:
            return
        if spec.startswith("@every "):
            duration = spec[len("@every "):]
            if not _GO_DURATION_RE.fullmatch(duration):
                raise ValueError(f'failed to parse duration {spec}: time: invalid duration "{duration}"')
            return
        raise ValueError(f"unrecognized descriptor: {spec}")
    fields = spec.split()
    if len(fields) != 5:
        raise ValueError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    for text, (_, lo, hi, names) in zip(fields, _BOUNDS):
        for expr in (e for e in text.split(",") if e):
            _check_range(expr, lo, hi, names)


def _valid_zone(tz: str) -> bool:
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


# ---- validation -----------------------------------------------------------------------------------

_JOB_RESTART = ("OnFailure", "Never")


def _validate_job_spec(spec: dict[str, Any], path: str, *, template_only: bool) -> list[Cause]:
    causes = validate_nonnegative(spec, ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished",
                                         "backoffLimitPerIndex", "maxFailedIndexes"), path)
    ads = spec.get("activeDeadlineSeconds")
    if isinstance(ads, int) and not isinstance(ads, bool) and ads <= 0:
        causes.append(field_invalid(f"{path}.activeDeadlineSeconds", ads, "must be greater than or equal to 0"
                                    if ads < 0 else "must be greater than 0"))
    mode = spec.get("completionMode")
    if mode is not None and mode not in ("NonIndexed", "Indexed"):
        causes.append(field_unsupported(f"{path}.completionMode", mode, ("NonIndexed", "Indexed")))
    if mode == "Indexed" and spec.get("completions") is None:
        causes.append(field_required(f"{path}.completions", "when completion mode is Indexed"))
    prp = spec.get("podReplacementPolicy")
    if prp is not None and prp not in ("TerminatingOrFailed", "Failed"):
        causes.append(field_unsupported(f"{path}.podReplacementPolicy", prp, ("TerminatingOrFailed", "Failed")))
    if template_only:
        causes += validate_pod_template(spec.get("template"), f"{path}.template")
        tspec = (spec.get("template") or {}).get("spec") or {}
        rp = tspec.get("restartPolicy") if isinstance(tspec, dict) else None
        if rp not in _JOB_RESTART:
            causes.append(field_unsupported(f"{path}.template.spec.restartPolicy", rp, _JOB_RESTART))
        return causes
    causes += validate_selector_and_template(spec, "job", restart_policies=_JOB_RESTART, path=path)
    return causes


class JobStrategy(TemplateStrategy):
    def default(self, obj: dict[str, Any]) -> None:
        default_job(obj)

    def prepare_for_create(self, obj: dict[str, Any]) -> None:
        super().prepare_for_create(obj)
        generate_job_selector(obj)
        # kube re-runs defaulting whenever it decodes the stored Job: a Job created without
        # labels reads back with its template's, the generated ones included.
        meta = obj.setdefault("metadata", {})
        template = spec_of(obj).get("template")
        labels = ((template or {}).get("metadata") or {}).get("labels") if isinstance(template, dict) else None
        if not meta.get("labels") and isinstance(labels, dict) and labels:
            meta["labels"] = dict(labels)

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes = _validate_job_spec(spec, "spec", template_only=False)
        uid = (obj.get("metadata") or {}).get("uid")
        sel = spec.get("selector")
        if spec.get("manualSelector") is not True and isinstance(sel, dict) and uid and \
                (sel.get("matchLabels") or {}).get(CONTROLLER_UID_LABEL) != uid:
            causes.append(field_invalid("spec.selector", sel.get("matchLabels") or {},
                                        "`selector` not auto-generated"))
        if old is not None:
            ospec = spec_of(old)
            causes += immutable_selector(spec, ospec)
            causes += immutable(spec.get("completionMode"), ospec.get("completionMode"), "spec.completionMode")
            if spec.get("completions") != ospec.get("completions") and spec.get("completionMode") != "Indexed":
                causes += immutable(spec.get("completions"), ospec.get("completions"), "spec.completions")
            if spec.get("template") != ospec.get("template") and not (spec.get("suspend") and ospec.get("suspend")):
                causes.append(Cause("FieldValueInvalid", "Invalid value: core.PodTemplateSpec{...}: field is immutable",
                                    "spec.template"))
        return causes


class CronJobStrategy(TemplateStrategy):
    def default(self, obj: dict[str, Any]) -> None:
        default_cron_job(obj)

    def validate_spec(self, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
        spec = spec_of(obj)
        causes: list[Cause] = []
        name = (obj.get("metadata") or {}).get("name")
        if isinstance(name, str) and len(name) > _CRONJOB_NAME_MAX:
            causes.append(field_invalid("metadata.name", name, f"must be no more than {_CRONJOB_NAME_MAX} characters"))
        schedule = spec.get("schedule")
        if not schedule:
            causes.append(field_required("spec.schedule"))
        elif isinstance(schedule, str):
            try:
                parse_cron_schedule(schedule)
            except ValueError as e:
                causes.append(field_invalid("spec.schedule", schedule, str(e)))
            if "TZ" in schedule:
                causes.append(field_invalid("spec.schedule", schedule,
                                            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
        tz = spec.get("timeZone")
        if isinstance(tz, str):
            if not tz:
                causes.append(field_invalid("spec.timeZone", tz, "timeZone must be nil or non-empty string"))
            elif tz.lower() == "local":
                causes.append(field_invalid("spec.timeZone", tz, "timeZone must be an explicit time zone as defined "
                                                                  "in https://www.iana.org/time-zones"))
            elif not _valid_zone(tz):
                causes.append(field_invalid("spec.timeZone", tz, f"unknown time zone {tz}"))
        cp = spec.get("concurrencyPolicy")
        if cp not in ("Allow", "Forbid", "Replace"):
            causes.append(field_unsupported("spec.concurrencyPolicy", cp, ("Allow", "Forbid", "Replace")))
        causes += validate_nonnegative(spec, ("startingDeadlineSeconds", "successfulJobsHistoryLimit",
                                              "failedJobsHistoryLimit"))
        jt = spec.get("jobTemplate")
        if not isinstance(jt, dict):
            causes.append(field_required("spec.jobTemplate"))
        else:
            jspec = jt.get("spec") if isinstance(jt.get("spec"), dict) else {}
            assert isinstance(jspec, dict)
            if jspec.get("manualSelector") is True:
                causes.append(field_unsupported("spec.jobTemplate.spec.manualSelector", True, ("nil", "false")))
            causes += _validate_job_spec(jspec, "spec.jobTemplate.spec", template_only=True)
        return causes


BATCH_STRATEGIES: dict[tuple[str, str], Strategy] = {
    ("batch", "jobs"): JobStrategy(),
    ("batch", "cronjobs"): CronJobStrategy(),
}

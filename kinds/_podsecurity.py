"""Pod Security Standards: the checks of ``k8s.io/pod-security-admission`` as kube 1.33 runs them.

Pure functions over a pod's metadata and spec (JSON dicts):

- :func:`policy_to_evaluate` reads a namespace's ``pod-security.kubernetes.io/<mode>[-version]``
  labels into a :class:`Policy` (kube's ``PolicyToEvaluate``: an invalid enforce level enforces
  ``restricted``, invalid audit and warn levels fail open to ``privileged``, an invalid version is
  ``latest``; warn defaults to the enforce level when only enforce is set), with kube's
  field errors for the invalid labels.
- :func:`evaluate` runs the checks of a level at a version, in kube's order (the baseline checks by
  ID, then the restricted ones by ID; a restricted check replaces the baseline checks it
  overrides), each check picked at the newest version not after the policy's (``latest`` is the
  newest check version, v1.32 in kube 1.33); :func:`forbidden_detail` and
  :func:`forbidden_reason` word the results as kube's ``AggregateCheckResult``.

Every check of pod-security-admission v0.33 is here: hostNamespaces, privileged,
capabilities_baseline, hostPathVolumes, hostPorts, appArmorProfile (annotations and fields),
seLinuxOptions, procMount, seccompProfile_baseline, sysctls, windowsHostProcess;
allowPrivilegeEscalation, capabilities_restricted, restrictedVolumes, runAsNonRoot, runAsUser,
seccompProfile_restricted. (The user-namespace relaxation is behind an alpha feature gate, off.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["LABEL_PREFIX", "LEVELS", "LevelVersion", "Policy", "evaluate", "forbidden_detail", "forbidden_reason",
           "policy_to_evaluate", "violations"]

LEVELS = ("privileged", "baseline", "restricted")
LABEL_PREFIX = "pod-security.kubernetes.io/"
Version = tuple[int, int] | None  # None: "latest"
Meta = dict[str, Any]
Spec = dict[str, Any]
Result = tuple[str, str] | None  # (forbidden reason, detail), None: allowed


class LevelVersion(NamedTuple):
    level: str
    version: Version = None

    def __str__(self) -> str:
        v = "latest" if self.version is None else f"v{self.version[0]}.{self.version[1]}"
        return f"{self.level}:{v}"


class Policy(NamedTuple):
    enforce: LevelVersion = LevelVersion("privileged")
    audit: LevelVersion = LevelVersion("privileged")
    warn: LevelVersion = LevelVersion("privileged")

    @property
    def fully_privileged(self) -> bool:
        return self.enforce.level == self.audit.level == self.warn.level == "privileged"


_VERSION = re.compile(r"^v1\.([0-9]|[1-9][0-9]*)$")


def _parse_level(value: str) -> tuple[str, str]:
    if value in LEVELS:
        return value, ""
    return "restricted", "must be one of privileged, baseline, restricted"


def _parse_version(value: str) -> tuple[Version, str]:
    if value == "latest":
        return None, ""
    m = _VERSION.match(value)
    if m is None:
        return None, 'must be "latest" or "v1.x"'
    return (1, int(m.group(1))), ""


def _level_rank(level: str) -> int:
    return LEVELS.index(level)


def policy_to_evaluate(labels: dict[str, str]) -> tuple[Policy, list[tuple[str, str, str]]]:
    """The namespace's policy, and (label, value, message) for each invalid label (kube's order)."""
    errors: list[tuple[str, str, str]] = []
    modes: dict[str, list[Any]] = {m: ["privileged", None] for m in ("enforce", "audit", "warn")}
    has_enforce_level = has_warn_level = has_warn_version = False
    for mode in ("enforce", "audit", "warn"):
        label = LABEL_PREFIX + mode
        if label in labels:
            level, err = _parse_level(labels[label])
            if err:
                errors.append((label, labels[label], err))
                if mode != "enforce":
                    level = "privileged"  # audit and warn fail open
            modes[mode][0] = level
            if mode == "enforce":
                has_enforce_level = not err
            if mode == "warn":
                has_warn_level = True
        vlabel = label + "-version"
        if vlabel in labels:
            version, err = _parse_version(labels[vlabel])
            if err:
                errors.append((vlabel, labels[vlabel], err))
            modes[mode][1] = version
            if mode == "warn":
                has_warn_version = True
    enforce, warn = modes["enforce"], modes["warn"]
    if not has_warn_level and has_enforce_level and _level_rank(enforce[0]) > _level_rank(warn[0]):
        warn[0] = enforce[0]
        if not has_warn_version:
            warn[1] = enforce[1]
    return Policy(*(LevelVersion(*modes[m]) for m in ("enforce", "audit", "warn"))), errors


# ---- helpers --------------------------------------------------------------------------------------


def _containers(spec: Spec) -> list[dict[str, Any]]:
    """visitContainers' order: init containers, containers, ephemeral containers."""
    return [c for f in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(f) or []
            if isinstance(c, dict)]


def _obj(o: Any, key: str) -> dict[str, Any] | None:
    v = o.get(key) if isinstance(o, dict) else None
    return v if isinstance(v, dict) else None


def _sc(o: dict[str, Any]) -> dict[str, Any] | None:
    return _obj(o, "securityContext")


def _join_quote(items: list[str]) -> str:
    return '"' + '", "'.join(items) + '"' if items else ""


def _plural(one: str, many: str, n: int) -> str:
    return one if n == 1 else many


def _containers_phrase(names: list[str]) -> str:
    return f"{_plural('container', 'containers', len(names))} {_join_quote(names)}"


def _windows(spec: Spec) -> bool:
    return (_obj(spec, "os") or {}).get("name") == "windows"


def _name(c: dict[str, Any]) -> str:
    return str(c.get("name", ""))


# ---- baseline checks ------------------------------------------------------------------------------


def _host_namespaces(meta: Meta, spec: Spec) -> Result:
    on = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f) is True]
    return ("host namespaces", ", ".join(on)) if on else None


def _privileged(meta: Meta, spec: Spec) -> Result:
    bad = [_name(c) for c in _containers(spec) if (_sc(c) or {}).get("privileged") is True]
    return ("privileged", f"{_containers_phrase(bad)} must not set securityContext.privileged=true") if bad else None


_BASELINE_CAPS = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                            "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})


def _capabilities_baseline(meta: Meta, spec: Spec) -> Result:
    bad: list[str] = []
    caps: set[str] = set()
    for c in _containers(spec):
        adds = [str(x) for x in (_obj(_sc(c), "capabilities") or {}).get("add") or [] if x not in _BASELINE_CAPS]
        if adds:
            bad.append(_name(c))
            caps.update(adds)
    if not bad:
        return None
    return ("non-default capabilities", (f"{_containers_phrase(bad)} must not include "
                                        f"{_join_quote(sorted(caps))} in securityContext.capabilities.add"))


def _host_path_volumes(meta: Meta, spec: Spec) -> Result:
    bad = [str(v.get("name", "")) for v in spec.get("volumes") or [] if isinstance(v, dict)
           and v.get("hostPath") is not None]
    return ("hostPath volumes", f"{_plural('volume', 'volumes', len(bad))} {_join_quote(bad)}") if bad else None


def _host_ports(meta: Meta, spec: Spec) -> Result:
    bad: list[str] = []
    ports: set[str] = set()
    for c in _containers(spec):
        mine = {str(p["hostPort"]) for p in c.get("ports") or [] if isinstance(p, dict) and p.get("hostPort")}
        if mine:
            bad.append(_name(c))
            ports |= mine
    if not bad:
        return None
    return ("hostPort", (f"{_containers_phrase(bad)} {_plural('uses', 'use', len(bad))} "
                        f"{_plural('hostPort', 'hostPorts', len(ports))} {', '.join(sorted(ports))}"))


_APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"


def _apparmor_profile(meta: Meta, spec: Spec) -> Result:
    def bad_type(holder: Any) -> str | None:
        profile = _obj(_sc(holder) if isinstance(holder, dict) else None, "appArmorProfile")
        if profile is None:
            return None
        t = str(profile.get("type") or "")
        return None if t in ("RuntimeDefault", "Localhost") else t

    setters: list[str] = []
    values: set[str] = set()
    if (t := bad_type(spec)) is not None:
        setters.append("pod")
        values.add(t)
    bad = []
    for c in _containers(spec):
        if (t := bad_type(c)) is not None:
            bad.append(_name(c))
            values.add(t)
    if bad:
        setters.append(_containers_phrase(bad))
    annotations = [f'{k}="{v}"' for k, v in ((meta.get("annotations") or {}) if isinstance(meta, dict) else {}).items()
                   if k.startswith(_APPARMOR_ANNOTATION) and not (
                       not v or v == "runtime/default" or str(v).startswith("localhost/"))]
    value_list = sorted(values)
    if annotations:
        value_list += sorted(annotations)
        setters.append(_plural("annotation", "annotations", len(annotations)))
    if not setters:
        return None
    return (_plural("forbidden AppArmor profile", "forbidden AppArmor profiles", len(value_list)),
            f"{' and '.join(setters)} must not set AppArmor profile type to {_join_quote(value_list)}")


def _se_linux_options(allowed_types: frozenset[str]) -> Callable[[Meta, Spec], Result]:
    def check(meta: Meta, spec: Spec) -> Result:
        bad_types: set[str] = set()
        flags = {"user": False, "role": False}

        def valid(opts: dict[str, Any]) -> bool:
            ok = True
            t = str(opts.get("type") or "")
            if t not in allowed_types:
                ok = False
                bad_types.add(t)
            for f in ("user", "role"):
                if opts.get(f):
                    ok = False
                    flags[f] = True
            return ok

        setters: list[str] = []
        pod_opts = _obj(_sc(spec), "seLinuxOptions")
        if pod_opts is not None and not valid(pod_opts):
            setters.append("pod")
        bad = [_name(c) for c in _containers(spec)
               if (o := _obj(_sc(c), "seLinuxOptions")) is not None and not valid(o)]
        if bad:
            setters.append(_containers_phrase(bad))
        if not setters:
            return None
        data = []
        if bad_types:
            data.append(f"{_plural('type', 'types', len(bad_types))} {_join_quote(sorted(bad_types))}")
        if flags["user"]:
            data.append("user may not be set")
        if flags["role"]:
            data.append("role may not be set")
        return ("seLinuxOptions", (f"{' and '.join(setters)} set forbidden securityContext.seLinuxOptions: "
                                  f"{'; '.join(data)}"))
    return check


_SELINUX_1_0 = frozenset({"", "container_t", "container_init_t", "container_kvm_t"})
_SELINUX_1_31 = _SELINUX_1_0 | {"container_engine_t"}


def _proc_mount(meta: Meta, spec: Spec) -> Result:
    bad: list[str] = []
    kinds: set[str] = set()
    for c in _containers(spec):
        pm = (_sc(c) or {}).get("procMount")
        if pm is not None and pm != "Default":
            bad.append(_name(c))
            kinds.add(str(pm))
    if not bad:
        return None
    return ("procMount", (f"{_containers_phrase(bad)} must not set securityContext.procMount to "
                         f"{_join_quote(sorted(kinds))}"))


_SECCOMP_POD_ANNOTATION = "seccomp.security.alpha.kubernetes.io/pod"
_SECCOMP_CONTAINER_ANNOTATION = "container.seccomp.security.alpha.kubernetes.io/"


def _seccomp_type(holder: Any) -> str | None:
    profile = _obj(_sc(holder) if isinstance(holder, dict) else None, "seccompProfile")
    return None if profile is None else str(profile.get("type") or "")


def _seccomp_baseline_1_0(meta: Meta, spec: Spec) -> Result:
    annotations = (meta.get("annotations") or {}) if isinstance(meta, dict) else {}

    def ok(v: Any) -> bool:
        return v in ("runtime/default", "docker/default") or str(v).startswith("localhost/")

    bad: set[str] = set()
    if _SECCOMP_POD_ANNOTATION in annotations and not ok(annotations[_SECCOMP_POD_ANNOTATION]):
        bad.add(f'{_SECCOMP_POD_ANNOTATION}="{annotations[_SECCOMP_POD_ANNOTATION]}"')
    for c in _containers(spec):
        key = _SECCOMP_CONTAINER_ANNOTATION + _name(c)
        if key in annotations and not ok(annotations[key]):
            bad.add(f'{key}="{annotations[key]}"')
    if not bad:
        return None
    return ("seccompProfile", (f"forbidden {_plural('annotation', 'annotations', len(bad))} "
                              f"{', '.join(sorted(bad))}"))


_SECCOMP_OK = ("RuntimeDefault", "Localhost")


def _seccomp(meta: Meta, spec: Spec, *, restricted: bool) -> Result:
    setters: list[str] = []
    values: set[str] = set()
    pod_set = False
    t = _seccomp_type(spec)
    if t is not None:
        if t not in _SECCOMP_OK:
            setters.append("pod")
            values.add(t)
        else:
            pod_set = True
    explicit: list[str] = []
    implicit: list[str] = []
    for c in _containers(spec):
        ct = _seccomp_type(c)
        if ct is not None:
            if ct not in _SECCOMP_OK:
                explicit.append(_name(c))
                values.add(ct)
        elif not pod_set:
            implicit.append(_name(c))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return ("seccompProfile", (f"{' and '.join(setters)} must not set securityContext.seccompProfile.type to "
                                  f"{_join_quote(sorted(values))}"))
    if restricted and implicit:
        return ("seccompProfile", (f'pod or {_containers_phrase(implicit)} must set '
                                  f'securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"'))
    return None


def _seccomp_baseline_1_19(meta: Meta, spec: Spec) -> Result:
    return _seccomp(meta, spec, restricted=False)


_SYSCTLS_1_0 = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                          "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"})
_SYSCTLS_1_27 = _SYSCTLS_1_0 | {"net.ipv4.ip_local_reserved_ports"}
_SYSCTLS_1_29 = _SYSCTLS_1_27 | {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                                 "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
_SYSCTLS_1_32 = _SYSCTLS_1_29 | {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"}


def _sysctls(allowed: frozenset[str]) -> Callable[[Meta, Spec], Result]:
    def check(meta: Meta, spec: Spec) -> Result:
        bad = [str(s.get("name", "")) for s in (_sc(spec) or {}).get("sysctls") or [] if isinstance(s, dict)
               and s.get("name") not in allowed]
        return ("forbidden sysctls", ", ".join(bad)) if bad else None
    return check


def _windows_host_process(meta: Meta, spec: Spec) -> Result:
    def on(holder: Any) -> bool:
        return (_obj(_sc(holder) if isinstance(holder, dict) else None, "windowsOptions") or {}).get(
            "hostProcess") is True

    setters = ["pod"] if on(spec) else []
    bad = [_name(c) for c in _containers(spec) if on(c)]
    if bad:
        setters.append(_containers_phrase(bad))
    if not setters:
        return None
    return ("hostProcess", f"{' and '.join(setters)} must not set securityContext.windowsOptions.hostProcess=true")


# ---- restricted checks ----------------------------------------------------------------------------


def _allow_privilege_escalation_1_8(meta: Meta, spec: Spec) -> Result:
    bad = [_name(c) for c in _containers(spec) if (_sc(c) or {}).get("allowPrivilegeEscalation") is not False]
    return ("allowPrivilegeEscalation != false",
            f"{_containers_phrase(bad)} must set securityContext.allowPrivilegeEscalation=false") if bad else None


def _not_windows(check: Callable[[Meta, Spec], Result]) -> Callable[[Meta, Spec], Result]:
    """The v1.25 versions of some restricted checks: pods with ``spec.os.name: windows`` pass."""
    def wrapped(meta: Meta, spec: Spec) -> Result:
        return None if _windows(spec) else check(meta, spec)
    return wrapped


def _capabilities_restricted_1_22(meta: Meta, spec: Spec) -> Result:
    missing_drop: list[str] = []
    adding: list[str] = []
    caps: set[str] = set()
    for c in _containers(spec):
        cap = _obj(_sc(c), "capabilities")
        if cap is None:
            missing_drop.append(_name(c))
            continue
        if "ALL" not in (cap.get("drop") or []):
            missing_drop.append(_name(c))
        adds = [str(x) for x in cap.get("add") or [] if x != "NET_BIND_SERVICE"]
        if adds:
            adding.append(_name(c))
            caps.update(adds)
    details = []
    if missing_drop:
        details.append(f'{_containers_phrase(missing_drop)} must set securityContext.capabilities.drop=["ALL"]')
    if adding:
        details.append(f"{_containers_phrase(adding)} must not include {_join_quote(sorted(caps))} in "
                       f"securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


_ALLOWED_VOLUMES = ("configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
                    "projected", "secret")
_RESTRICTED_VOLUME_TYPES = ("hostPath", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo", "nfs", "iscsi",
                            "glusterfs", "rbd", "flexVolume", "cinder", "cephfs", "flocker", "fc", "azureFile",
                            "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "portworxVolume",
                            "scaleIO", "storageos")


def _restricted_volumes(meta: Meta, spec: Spec) -> Result:
    bad: list[str] = []
    types: set[str] = set()
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict) or any(v.get(k) is not None for k in _ALLOWED_VOLUMES):
            continue
        bad.append(str(v.get("name", "")))
        types.add(next((t for t in _RESTRICTED_VOLUME_TYPES if v.get(t) is not None), "unknown"))
    if not bad:
        return None
    return ("restricted volume types", (f"{_plural('volume', 'volumes', len(bad))} {_join_quote(bad)} "
                                       f"{_plural('uses', 'use', len(bad))} "
                                       f"{_plural('restricted volume type', 'restricted volume types', len(types))} "
                                       f"{_join_quote(sorted(types))}"))


def _run_as_non_root(meta: Meta, spec: Spec) -> Result:
    setters: list[str] = []
    pod_true = False
    pod = (_sc(spec) or {}).get("runAsNonRoot")
    if pod is not None:
        if pod is False:
            setters.append("pod")
        else:
            pod_true = True
    explicit: list[str] = []
    implicit: list[str] = []
    for c in _containers(spec):
        v = (_sc(c) or {}).get("runAsNonRoot")
        if v is not None:
            if v is False:
                explicit.append(_name(c))
        elif not pod_true:
            implicit.append(_name(c))
    if explicit:
        setters.append(_containers_phrase(explicit))
    if setters:
        return ("runAsNonRoot != true", f"{' and '.join(setters)} must not set securityContext.runAsNonRoot=false")
    if implicit:
        return ("runAsNonRoot != true", (f"pod or {_containers_phrase(implicit)} must set "
                                        f"securityContext.runAsNonRoot=true"))
    return None


def _is_zero(v: Any) -> bool:
    return type(v) is int and v == 0


def _run_as_user(meta: Meta, spec: Spec) -> Result:
    setters = ["pod"] if _is_zero((_sc(spec) or {}).get("runAsUser")) else []
    bad = [_name(c) for c in _containers(spec) if _is_zero((_sc(c) or {}).get("runAsUser"))]
    if bad:
        setters.append(_containers_phrase(bad))
    return ("runAsUser=0", f"{' and '.join(setters)} must not set runAsUser=0") if setters else None


def _seccomp_restricted_1_19(meta: Meta, spec: Spec) -> Result:
    return _seccomp(meta, spec, restricted=True)


# ---- the registry ---------------------------------------------------------------------------------

Check = Callable[[Meta, Spec], Result]


class _Versioned(NamedTuple):
    minimum: tuple[int, int]
    check: Check
    overrides: tuple[str, ...] = ()


# (check ID, level, versions oldest first): pod-security-admission v0.33's DefaultChecks().
_CHECKS: tuple[tuple[str, str, tuple[_Versioned, ...]], ...] = (
    ("appArmorProfile", "baseline", (_Versioned((1, 0), _apparmor_profile),)),
    ("capabilities_baseline", "baseline", (_Versioned((1, 0), _capabilities_baseline),)),
    ("hostNamespaces", "baseline", (_Versioned((1, 0), _host_namespaces),)),
    ("hostPathVolumes", "baseline", (_Versioned((1, 0), _host_path_volumes),)),
    ("hostPorts", "baseline", (_Versioned((1, 0), _host_ports),)),
    ("privileged", "baseline", (_Versioned((1, 0), _privileged),)),
    ("procMount", "baseline", (_Versioned((1, 0), _proc_mount),)),
    ("seLinuxOptions", "baseline", (_Versioned((1, 0), _se_linux_options(_SELINUX_1_0)),
                                    _Versioned((1, 31), _se_linux_options(_SELINUX_1_31)))),
    ("seccompProfile_baseline", "baseline", (_Versioned((1, 0), _seccomp_baseline_1_0),
                                             _Versioned((1, 19), _seccomp_baseline_1_19))),
    ("sysctls", "baseline", (_Versioned((1, 0), _sysctls(_SYSCTLS_1_0)), _Versioned((1, 27), _sysctls(_SYSCTLS_1_27)),
                             _Versioned((1, 29), _sysctls(_SYSCTLS_1_29)),
                             _Versioned((1, 32), _sysctls(_SYSCTLS_1_32)))),
    ("windowsHostProcess", "baseline", (_Versioned((1, 0), _windows_host_process),)),
    ("allowPrivilegeEscalation", "restricted", (_Versioned((1, 8), _allow_privilege_escalation_1_8),
                                                _Versioned((1, 25), _not_windows(_allow_privilege_escalation_1_8)))),
    ("capabilities_restricted", "restricted", (
        _Versioned((1, 22), _capabilities_restricted_1_22, ("capabilities_baseline",)),
        _Versioned((1, 25), _not_windows(_capabilities_restricted_1_22), ("capabilities_baseline",)))),
    ("restrictedVolumes", "restricted", (_Versioned((1, 0), _restricted_volumes, ("hostPathVolumes",)),)),
    ("runAsNonRoot", "restricted", (_Versioned((1, 0), _run_as_non_root),)),
    ("runAsUser", "restricted", (_Versioned((1, 23), _run_as_user),)),
    ("seccompProfile_restricted", "restricted", (
        _Versioned((1, 19), _seccomp_restricted_1_19, ("seccompProfile_baseline",)),
        _Versioned((1, 25), _not_windows(_seccomp_restricted_1_19), ("seccompProfile_baseline",)))),
)
#: The newest check version: what "latest" (and any newer version) evaluates.
MAX_VERSION: tuple[int, int] = max(v.minimum for _, _, vs in _CHECKS for v in vs)
_ORDER = {cid: i for i, cid in enumerate(
    sorted(c[0] for c in _CHECKS if c[1] == "baseline") + sorted(c[0] for c in _CHECKS if c[1] == "restricted"))}
_cache: dict[tuple[str, tuple[int, int]], tuple[Check, ...]] = {}


def _checks_for(level: str, version: tuple[int, int]) -> tuple[Check, ...]:
    found = _cache.get((level, version))
    if found is not None:
        return found
    picked: dict[str, _Versioned] = {}
    for cid, lvl, versions in _CHECKS:
        if lvl == "baseline" or level == "restricted":
            applicable = [v for v in versions if v.minimum <= version]
            if applicable:
                picked[cid] = applicable[-1]
    overridden = {o for v in picked.values() for o in v.overrides}
    out = tuple(picked[cid].check for cid in sorted(picked, key=_ORDER.__getitem__) if cid not in overridden)
    _cache[(level, version)] = out
    return out


def evaluate(lv: LevelVersion, meta: Meta | None, spec: Spec | None) -> list[tuple[str, str]]:
    """The failed checks (reason, detail) of a pod(-template)'s metadata and spec at ``lv``."""
    if lv.level not in ("baseline", "restricted"):
        return []
    version = MAX_VERSION if lv.version is None or lv.version > MAX_VERSION else lv.version
    meta = meta if isinstance(meta, dict) else {}
    spec = spec if isinstance(spec, dict) else {}
    return [r for check in _checks_for(lv.level, version) if (r := check(meta, spec)) is not None]


def forbidden_detail(results: list[tuple[str, str]]) -> str:
    """``AggregateCheckResult.ForbiddenDetail``: ``reason (detail), ...``."""
    return ", ".join(f"{reason} ({detail})" if detail else reason for reason, detail in results)


def forbidden_reason(results: list[tuple[str, str]]) -> str:
    """``AggregateCheckResult.ForbiddenReason``: the reasons alone."""
    return ", ".join(reason for reason, _ in results)


def violations(level: str, spec: Spec, meta: Meta | None = None) -> list[str]:
    """kube's ``forbiddenReason (forbiddenDetail)`` strings for a pod spec at ``level:latest``."""
    return [f"{r} ({d})" if d else r for r, d in evaluate(LevelVersion(level), meta, spec)]

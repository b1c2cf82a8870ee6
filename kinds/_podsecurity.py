"""Pod Security Standards: the baseline and restricted checks of ``k8s.io/pod-security-admission``.

:func:`violations` answers kube's forbidden reasons with their details for one pod spec, in the
order kube reports them (by check ID), restricted checks replacing the baseline checks they
override (capabilities, seccompProfile). Not covered yet: seLinuxOptions, appArmorProfile,
windowsHostProcess, hostProbesAndHostLifecycle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["LEVELS", "violations"]

LEVELS = ("privileged", "baseline", "restricted")

_BASELINE_CAPS = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                            "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
_SAFE_SYSCTLS = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                           "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
                           "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
                           "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                           "net.ipv4.tcp_keepalive_probes"})
_RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                                 "projected", "secret", "image"})

Containers = list[dict[str, Any]]


def _containers(spec: dict[str, Any]) -> Containers:
    return [c for f in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(f) or []
            if isinstance(c, dict)]


def _sc(o: dict[str, Any]) -> dict[str, Any]:
    sc = o.get("securityContext")
    return sc if isinstance(sc, dict) else {}


def _names(kind: str, names: list[str]) -> str:
    quoted = ", ".join(f'"{n}"' for n in names)
    return f"{kind} {quoted}" if len(names) == 1 else f"{kind}s {quoted}"


def _verb(names: list[str], one: str, many: str) -> str:
    return one if len(names) == 1 else many


def _host_namespaces(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    on = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f) is True]
    return ("host namespaces", ", ".join(on)) if on else None


def _privileged(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    bad = [c.get("name", "") for c in cs if _sc(c).get("privileged") is True]
    return ("privileged", f"{_names('container', bad)} must not set securityContext.privileged=true") if bad else None


def _capabilities_baseline(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    details = []
    for c in cs:
        adds = [x for x in (_sc(c).get("capabilities") or {}).get("add") or [] if x not in _BASELINE_CAPS]
        if adds:
            details.append(f'container "{c.get("name", "")}" must not include '
                           f"{', '.join(chr(34) + x + chr(34) for x in adds)} in securityContext.capabilities.add")
    return ("non-default capabilities", "; ".join(details)) if details else None


def _capabilities_restricted(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    no_drop, details = [], []
    for c in cs:
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            no_drop.append(c.get("name", ""))
    if no_drop:
        details.append(f'{_names("container", no_drop)} must set securityContext.capabilities.drop=["ALL"]')
    for c in cs:
        adds = [x for x in (_sc(c).get("capabilities") or {}).get("add") or [] if x != "NET_BIND_SERVICE"]
        if adds:
            details.append(f'container "{c.get("name", "")}" must not include '
                           f"{', '.join(chr(34) + x + chr(34) for x in adds)} in securityContext.capabilities.add")
    return ("unrestricted capabilities", "; ".join(details)) if details else None


def _host_path(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    bad = [v.get("name", "") for v in spec.get("volumes") or [] if isinstance(v, dict) and "hostPath" in v]
    return ("hostPath volumes", _names("volume", bad)) if bad else None


def _host_ports(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    names, ports = [], []
    for c in cs:
        mine = [str(p["hostPort"]) for p in c.get("ports") or [] if isinstance(p, dict) and p.get("hostPort")]
        if mine:
            names.append(c.get("name", ""))
            ports.extend(mine)
    if not names:
        return None
    return ("hostPort", (f"{_names('container', names)} {_verb(names, 'uses', 'use')} "
                        f"{'hostPort' if len(ports) == 1 else 'hostPorts'} {', '.join(ports)}"))


def _proc_mount(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    bad = [(c.get("name", ""), _sc(c)["procMount"]) for c in cs if _sc(c).get("procMount") not in (None, "Default")]
    if not bad:
        return None
    names = [n for n, _ in bad]
    return ("procMount", (f'{_names("container", names)} must not set securityContext.procMount to '
                         f'{", ".join(chr(34) + v + chr(34) for v in dict.fromkeys(v for _, v in bad))}'))


def _restricted_volumes(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    bad = []
    for v in spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        kinds = [k for k in v if k != "name" and k not in _RESTRICTED_VOLUMES]
        if kinds:
            bad.append((v.get("name", ""), kinds[0]))
    if not bad:
        return None
    names = [n for n, _ in bad]
    types = list(dict.fromkeys(t for _, t in bad))
    return ("restricted volume types", (f"{_names('volume', names)} {_verb(names, 'uses', 'use')} restricted volume "
                                       f"{'type' if len(types) == 1 else 'types'} "
                                       f"{', '.join(chr(34) + t + chr(34) for t in types)}"))


def _allow_privilege_escalation(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    bad = [c.get("name", "") for c in cs if _sc(c).get("allowPrivilegeEscalation") is not False]
    return ("allowPrivilegeEscalation != false",
            f"{_names('container', bad)} must set securityContext.allowPrivilegeEscalation=false") if bad else None


def _run_as_non_root(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    pod = _sc(spec).get("runAsNonRoot")
    details = []
    if pod is False:
        details.append("pod must not set securityContext.runAsNonRoot=false")
    explicit_false = [c.get("name", "") for c in cs if _sc(c).get("runAsNonRoot") is False]
    if explicit_false:
        details.append(f"{_names('container', explicit_false)} must not set securityContext.runAsNonRoot=false")
    if pod is not True:
        unset = [c.get("name", "") for c in cs if _sc(c).get("runAsNonRoot") is None]
        if unset and pod is None:
            details.append(f"pod or {_names('container', unset)} must set securityContext.runAsNonRoot=true")
    return ("runAsNonRoot != true", "; ".join(details)) if details else None


def _run_as_user(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    details = []
    if _sc(spec).get("runAsUser") == 0:
        details.append("pod must not set runAsUser=0")
    bad = [c.get("name", "") for c in cs if _sc(c).get("runAsUser") == 0]
    if bad:
        details.append(f"{_names('container', bad)} must not set runAsUser=0")
    return ("runAsUser=0", "; ".join(details)) if details else None


def _seccomp_type(o: dict[str, Any]) -> Any:
    return (_sc(o).get("seccompProfile") or {}).get("type")


def _seccomp_baseline(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    details = []
    if _seccomp_type(spec) == "Unconfined":
        details.append('pod must not set securityContext.seccompProfile.type to "Unconfined"')
    bad = [c.get("name", "") for c in cs if _seccomp_type(c) == "Unconfined"]
    if bad:
        details.append(f'{_names("container", bad)} must not set securityContext.seccompProfile.type to "Unconfined"')
    return ("seccompProfile", "; ".join(details)) if details else None


def _seccomp_restricted(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    ok = ("RuntimeDefault", "Localhost")
    pod = _seccomp_type(spec)
    details = []
    if pod is not None and pod not in ok:
        details.append(f'pod must not set securityContext.seccompProfile.type to "{pod}"')
    bad = [c.get("name", "") for c in cs if _seccomp_type(c) is not None and _seccomp_type(c) not in ok]
    if bad:
        details.append(f'{_names("container", bad)} must not set securityContext.seccompProfile.type to '
                       f'{", ".join(chr(34) + str(_seccomp_type(c)) + chr(34) for c in cs if c.get("name") in bad)}')
    if pod is None:
        unset = [c.get("name", "") for c in cs if _seccomp_type(c) is None]
        if unset:
            details.append(f'pod or {_names("container", unset)} must set securityContext.seccompProfile.type to '
                           f'"RuntimeDefault" or "Localhost"')
    return ("seccompProfile", "; ".join(details)) if details else None


def _sysctls(spec: dict[str, Any], cs: Containers) -> tuple[str, str] | None:
    bad = [s.get("name", "") for s in _sc(spec).get("sysctls") or [] if isinstance(s, dict)
           and s.get("name") not in _SAFE_SYSCTLS]
    return ("forbidden sysctls", ", ".join(bad)) if bad else None


Check = Callable[[dict[str, Any], Containers], "tuple[str, str] | None"]
# (check ID, level, check, the baseline check ID it overrides), sorted by ID as kube reports them.
_CHECKS: tuple[tuple[str, str, Check, str], ...] = tuple(sorted((
    ("allowPrivilegeEscalation", "restricted", _allow_privilege_escalation, ""),
    ("capabilities_baseline", "baseline", _capabilities_baseline, ""),
    ("capabilities_restricted", "restricted", _capabilities_restricted, "capabilities_baseline"),
    ("hostNamespaces", "baseline", _host_namespaces, ""),
    ("hostPathVolumes", "baseline", _host_path, ""),
    ("hostPorts", "baseline", _host_ports, ""),
    ("privileged", "baseline", _privileged, ""),
    ("procMount", "baseline", _proc_mount, ""),
    ("restrictedVolumes", "restricted", _restricted_volumes, ""),
    ("runAsNonRoot", "restricted", _run_as_non_root, ""),
    ("runAsUser", "restricted", _run_as_user, ""),
    ("seccompProfile_baseline", "baseline", _seccomp_baseline, ""),
    ("seccompProfile_restricted", "restricted", _seccomp_restricted, "seccompProfile_baseline"),
    ("sysctls", "baseline", _sysctls, ""),
), key=lambda c: c[0]))


def violations(level: str, spec: dict[str, Any]) -> list[str]:
    """kube's ``forbiddenReason (forbiddenDetail)`` strings for a pod spec at ``level``."""
    if level not in ("baseline", "restricted") or not isinstance(spec, dict):
        return []
    cs = _containers(spec)
    checks = [c for c in _CHECKS if c[1] == "baseline" or level == "restricted"]
    overridden = {c[3] for c in checks if c[3]}
    out = []
    for cid, _lvl, check, _ in checks:
        if cid in overridden:
            continue
        found = check(spec, cs)
        if found is not None:
            reason, detail = found
            out.append(f"{reason} ({detail})" if detail else reason)
    return out

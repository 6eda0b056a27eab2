"""``GymApptainerProvider``: gym-apptainer as a NeMo Gym sandbox provider.

NeMo Gym finds it by the entry point ``gym_apptainer`` (group
``nemo_gym.sandbox_providers``), so a NeMo Gym user's config changes one
word, ``apptainer:`` to ``gym_apptainer:``, and may add a ``gym:`` mapping
(placement, state_dir, slurm...)::

    sandbox:
      gym_apptainer:
        exec: {default_timeout_s: 180}
        create: {mount_point: /sandbox}
        gym: {placement: slurm}

The provider returns NeMo Gym's own types when ``nemo_gym`` imports, else
faithful mirrors (``gym_apptainer._nemo_types``). It talks to the local
service (``gym-host serve``), which it starts itself with a config file
written from these options, so sandboxes it makes are the CLI's too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Union

from . import errors
from .aio import AsyncClient
from .configfile import build_config, write_config
from .discovery import Locator

try:  # NeMo Gym's own types when it is installed.
    from nemo_gym.sandbox.providers.base import (  # type: ignore[import-not-found]
        SandboxCreateError,
        SandboxCreateVerificationError,
        SandboxEndpoint,
        SandboxExecResult,
        SandboxHandle,
        SandboxResources,
        SandboxSpec,
        SandboxStatus,
    )

    USING_NEMO_GYM_TYPES = True
except ImportError:
    from ._nemo_types import (  # noqa: F401  (re-exported for callers)
        SandboxCreateError,
        SandboxCreateVerificationError,
        SandboxEndpoint,
        SandboxExecResult,
        SandboxHandle,
        SandboxResources,
        SandboxSpec,
        SandboxStatus,
    )

    USING_NEMO_GYM_TYPES = False

LOGGER = logging.getLogger(__name__)

PROVIDER_NAME = "gym_apptainer"
SANDBOX_RUNTIME_RETURN_CODE = 125
DESCRIPTOR_VERSION = 1
# The keys NeMo Gym's apptainer provider takes in each section; anything
# else is refused here, as NeMo Gym's config dataclasses refuse it.
NEMO_KEYS = {
    "exec": {"default_timeout_s", "fakeroot_for_root", "default_binds", "extra_exec_args", "concurrency"},
    "create": {"mount_point", "start_timeout_s", "extra_start_args", "apply_resource_limits"},
    "probe": {"command", "expected_stdout", "timeout_s", "deadline_s", "stable_count", "stable_delay_s"},
}
PROVIDER_OPTIONS = {"binds"}
_STATES = {s.value: s for s in SandboxStatus}


class GymApptainerCreateError(SandboxCreateError):
    """create failed; ``error_type`` is the service's word for why."""

    def __init__(self, message: str, error_type: str = "internal") -> None:
        super().__init__(message)
        self.error_type = error_type


@dataclass
class GymSandboxRef:
    """What the provider keeps on ``SandboxHandle.raw``."""

    sandbox_id: str
    image: str = ""
    placement: str = ""
    node: str = ""


def _section(name: str, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Mapping):
        unknown = set(value) - NEMO_KEYS[name]
        if unknown:
            raise TypeError(f"{name}: unknown option(s) {', '.join(sorted(map(str, unknown)))}; "
                            f"known: {', '.join(sorted(NEMO_KEYS[name]))}")
        return dict(value)
    if hasattr(value, "__dataclass_fields__"):  # NeMo Gym's own config dataclass
        return {f.name: getattr(value, f.name) for f in fields(value)}
    raise TypeError(f"{name} must be a mapping, got {type(value).__name__}")


def _check_nemo_rules(sections: Dict[str, Optional[Dict[str, Any]]]) -> None:
    """NeMo Gym's own checks of its apptainer options (its config
    dataclasses' __post_init__), so a bad value fails at construction as it
    does there; gym-host checks everything again when it loads the file."""

    def num(sec: str, key: str) -> Optional[float]:
        v = (sections.get(sec) or {}).get(key)
        return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    rules = [
        ("create", "start_timeout_s", lambda v: v > 0, "> 0"),
        ("exec", "default_timeout_s", lambda v: v > 0, "> 0"),
        ("exec", "concurrency", lambda v: v >= 1, ">= 1"),
        ("probe", "deadline_s", lambda v: v > 0, "> 0"),
        ("probe", "stable_count", lambda v: v >= 1, ">= 1"),
        ("probe", "stable_delay_s", lambda v: v >= 0, ">= 0"),
    ]
    probe = sections.get("probe") or {}
    if probe.get("command", "printf apptainer-sandbox-ready") is not None:
        rules.append(("probe", "timeout_s", lambda v: v > 0, "> 0"))
    for sec, key, ok, want in rules:
        v = num(sec, key)
        if v is not None and not ok(v):
            raise ValueError(f"{sec}.{key} must be {want}")
    mount = (sections.get("create") or {}).get("mount_point")
    if isinstance(mount, str) and not mount.startswith("/"):
        raise ValueError("create.mount_point must be an absolute path")


class GymApptainerProvider:
    """NeMo Gym's ``SandboxProvider`` (plus endpoint and connect) on gym-apptainer.

    Options: ``exec``, ``create``, ``probe``, ``bin_path`` as NeMo Gym's
    apptainer provider takes them; ``gym``: gym-apptainer's own settings
    (the ``gym:`` block of a gym-host config); ``default_metadata``. Or
    ``config_file``: an existing gym-host config instead of all of these.
    ``gym_host``: the gym-host binary (default $GYM_HOST, else PATH);
    ``service_socket``: an already running service (default
    $GYM_SERVICE_SOCKET); ``max_connections``: cap on requests in flight.
    """

    name = PROVIDER_NAME

    def __init__(
        self,
        *,
        exec: Any = None,
        create: Any = None,
        probe: Any = None,
        bin_path: Optional[str] = None,
        gym: Optional[Mapping[str, Any]] = None,
        default_metadata: Optional[Mapping[str, Any]] = None,
        config_file: Optional[Union[str, Path]] = None,
        gym_host: Optional[Union[str, Path]] = None,
        service_socket: Optional[str] = None,
        max_connections: Optional[int] = None,
    ) -> None:
        inline = dict(exec=_section("exec", exec), create=_section("create", create), probe=_section("probe", probe))
        _check_nemo_rules(inline)
        if gym is not None and not isinstance(gym, Mapping):
            raise TypeError(f"gym must be a mapping, got {type(gym).__name__}")
        if config_file is not None:
            if any(v is not None for v in inline.values()) or bin_path or gym or default_metadata:
                raise ValueError("config_file replaces exec/create/probe/bin_path/gym: give one or the other")
            self.config_path: Optional[str] = str(Path(config_file).resolve())
        else:
            doc = build_config(bin_path=bin_path, gym=gym, default_metadata=default_metadata, **inline)
            self.config_path = str(write_config(doc)) if doc else None
        self._locator = Locator(socket=service_socket, gym_host=str(gym_host) if gym_host else None,
                                config=self.config_path)
        if self._locator.fixed_socket() is None:
            self._locator.serve_argv()  # fails now, naming what to do, when gym-host is missing
        self._max_connections = max_connections
        self._client: Optional[AsyncClient] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # -- plumbing --

    @property
    def client(self) -> AsyncClient:
        """The AsyncClient of the running event loop (one per loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client = AsyncClient(
                self._locator.socket, config=self._locator.config, gym_host=self._locator.gym_host,
                max_connections=self._max_connections,
            )
            self._loop = loop
        return self._client

    def _handle(self, info: Any) -> SandboxHandle:
        ref = GymSandboxRef(info.id, info.image, info.placement, info.node)
        return SandboxHandle(sandbox_id=info.id, provider_name=self.name, raw=ref)

    # -- SandboxProvider --

    async def create(self, spec: SandboxSpec) -> SandboxHandle:
        """Create a sandbox and return its handle once the probe passed.

        ``spec.files`` are not seeded here: NeMo Gym's ``AsyncSandbox.start``
        uploads them after create (as with NeMo Gym's apptainer provider).
        ``entrypoint`` has no meaning for an Apptainer instance and is
        ignored; ``ttl_s`` is kept (``gc`` closes a sandbox past it).
        """
        if getattr(spec, "image", None) is None:
            raise GymApptainerCreateError("spec.image is required for the gym_apptainer provider", "invalid")
        options = dict(getattr(spec, "provider_options", None) or {})
        unknown = set(options) - PROVIDER_OPTIONS
        if unknown:
            raise GymApptainerCreateError(
                f"unknown provider_options {', '.join(sorted(unknown))}; known: {', '.join(sorted(PROVIDER_OPTIONS))}",
                "invalid",
            )
        binds = options.get("binds")
        if isinstance(binds, str):
            binds = [binds]
        elif binds is not None and not isinstance(binds, (list, tuple)):
            raise GymApptainerCreateError(f"provider_options['binds'] must be a string or list, got {type(binds).__name__}", "invalid")
        res = getattr(spec, "resources", None)
        if isinstance(res, Mapping):
            res = SandboxResources.from_mapping(res)
        resources = {k: getattr(res, k, None) for k in ("cpu", "memory_mib", "disk_gib", "gpu", "gpu_type")} if res else None
        if getattr(spec, "entrypoint", None):
            LOGGER.warning("gym_apptainer: spec.entrypoint is not supported by Apptainer instances; ignored")
        try:
            sb = await self.client.create(
                spec.image,
                env=spec.env or None,
                workdir=spec.workdir,
                resources=resources,
                binds=list(binds) if binds else None,
                ttl_s=spec.ttl_s,
                metadata=spec.metadata or None,
            )
        except errors.GymError as e:
            raise GymApptainerCreateError(f"gym_apptainer create (image={spec.image!r}): {e}", e.error_type) from e
        assert sb.info is not None
        return self._handle(sb.info)

    async def exec(
        self,
        handle: SandboxHandle,
        command: str,
        *,
        cwd: Optional[str] = None,
        env: Optional[Dict[str, str]] = None,
        timeout_s: Union[int, float, None] = None,
        user: Union[str, int, None] = None,
        stdin: Union[bytes, str, None] = None,
    ) -> SandboxExecResult:
        """Run ``command`` with ``sh -c`` in the sandbox.

        ``timeout_s``: None = the config's ``exec.default_timeout_s``, 0 = no
        time at all, > 0 seconds; a timeout kills every process the command
        started. ``env`` overrides the sandbox's create-time env. ``user``:
        None = the launching user, "root"/0 = fakeroot, another name = that
        user. ``stdin`` (bytes or text) is the command's standard input (as
        NeMo Gym's apptainer provider's extension). A failure of the sandbox
        or its runtime, an exec after close included, is a result with
        return code 125 and ``error_type`` "sandbox" ("timeout" for a
        timeout, "unavailable" when the SLURM controller cannot be reached),
        never an exception; an invalid request raises ValueError.
        """
        try:
            r = await self.client.exec(
                handle.sandbox_id, command, cwd=cwd, env=env, timeout_s=timeout_s, user=user, stdin=stdin
            )
        except (errors.NotFound, errors.SandboxFailed) as e:
            return SandboxExecResult(stdout=None, stderr=str(e), return_code=SANDBOX_RUNTIME_RETURN_CODE, error_type="sandbox")
        except (errors.Timeout, errors.Unavailable) as e:
            return SandboxExecResult(stdout=None, stderr=str(e), return_code=SANDBOX_RUNTIME_RETURN_CODE,
                                     error_type=e.error_type)
        stderr = r.stderr
        if r.error_type and r.message:
            # What failed is told in the message; NeMo Gym callers read stderr.
            stderr = f"{stderr}{'' if not stderr or stderr.endswith(chr(10)) else chr(10)}{r.message}"
        return SandboxExecResult(stdout=r.stdout, stderr=stderr, return_code=r.exit_code, error_type=r.error_type)

    async def upload_file(self, handle: SandboxHandle, source_path: Path, target_path: str) -> None:
        """Copy one local file into the sandbox (streamed; under the mount
        point straight into the staging dir, elsewhere through it)."""
        await self.client.upload(handle.sandbox_id, Path(source_path), target_path)

    async def download_file(self, handle: SandboxHandle, source_path: str, target_path: Path) -> None:
        """Copy one sandbox file to a local path, making missing parents."""
        await self.client.download(handle.sandbox_id, source_path, Path(target_path))

    async def status(self, handle: SandboxHandle) -> SandboxStatus:
        """RUNNING, STARTING, ERROR (a sandbox whose SLURM node failed
        included: the service's reason then starts with "lost: "), STOPPED
        (closed or gone) or UNKNOWN (e.g. the SLURM controller cannot be
        reached)."""
        try:
            info = await self.client.status(handle.sandbox_id)
        except errors.NotFound:
            return SandboxStatus.STOPPED
        except errors.InvalidRequest:
            raise
        except errors.GymError as e:
            LOGGER.warning("gym_apptainer status %s: %s", handle.sandbox_id, e)
            return SandboxStatus.UNKNOWN
        return _STATES.get(info.state, SandboxStatus.UNKNOWN)

    async def close(self, handle: SandboxHandle) -> None:
        """Close the sandbox; closing one that is closed or gone succeeds."""
        try:
            await self.client.close(handle.sandbox_id)
        except errors.NotFound:
            return

    async def aclose(self) -> None:
        """Close this provider's connections (the service idles out itself)."""
        if self._client is not None:
            try:
                await self._client.aclose()
            finally:
                self._client = None
                self._loop = None

    # -- SupportsSandboxEndpoint --

    async def endpoint(self, handle: SandboxHandle, port: int) -> SandboxEndpoint:
        """The URL a client reaches ``port`` of the sandbox at (127.0.0.1 on
        one node, the node's name under SLURM)."""
        ep = await self.client.endpoint(handle.sandbox_id, port)
        return SandboxEndpoint(endpoint=ep.endpoint, headers=dict(ep.headers))

    # -- SupportsSandboxPty --

    async def create_pty(self, handle: SandboxHandle, spec: Any) -> Any:
        """An interactive terminal in the sandbox (NeMo Gym's SandboxPtySpec
        in, a ``gym_apptainer.pty.PtySession`` out): ``command`` None is the
        image's login shell; ``pty=False`` is pipe mode. No time limit; the
        program is killed when the session is closed."""
        from .pty import open_pty

        return await open_pty(
            self.client, handle.sandbox_id, command=spec.command, cwd=spec.cwd, env=spec.env,
            user=spec.user, rows=spec.rows, cols=spec.cols, pty=spec.pty,
        )

    # -- ConnectableProvider --

    async def serialize_handle(self, handle: SandboxHandle, *, scope: Optional[str] = None) -> Dict[str, Any]:
        """A JSON descriptor another process rebuilds the handle from with
        ``connect`` (with a provider of the same options). ``scope`` is ignored."""
        raw = handle.raw if isinstance(handle.raw, GymSandboxRef) else GymSandboxRef(handle.sandbox_id)
        return {
            "provider": self.name,
            "version": DESCRIPTOR_VERSION,
            "sandbox_id": handle.sandbox_id,
            "image": raw.image,
            "placement": raw.placement,
            "node": raw.node,
        }

    async def connect(self, descriptor: Mapping[str, Any]) -> SandboxHandle:
        """The handle of a descriptor from ``serialize_handle``; the sandbox
        must exist for this service (a closed one reads STOPPED later)."""
        if not isinstance(descriptor, Mapping) or descriptor.get("provider") != self.name:
            raise ValueError(f"not a {self.name} sandbox descriptor: {descriptor!r}")
        if descriptor.get("version") != DESCRIPTOR_VERSION:
            raise ValueError(f"{self.name} descriptor version {descriptor.get('version')!r} is not {DESCRIPTOR_VERSION}")
        sandbox_id = descriptor.get("sandbox_id")
        if not isinstance(sandbox_id, str) or not sandbox_id:
            raise ValueError("descriptor has no sandbox_id")
        info = await self.client.status(sandbox_id)  # NotFound (a LookupError) when unknown here
        return self._handle(info)

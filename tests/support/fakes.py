"""In-memory stand-ins for the Docker Engine and the running HAProxy, for where real ones cannot be
had in the numbers needed: the control-plane benchmark (10,000 apps) and query-count tests (which
count the database's work, not the engine's). Everything else in the paths they serve is the real
code. Tests against the real engine and router are in tests/runtime and tests/e2e."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from apps.runtime.engine import ContainerInfo, ContainerNotFound
from apps.runtime.router import HAProxyRouter


class InMemoryEngine:
    """A stand-in for apps.runtime.engine.DockerEngine, in memory, where real containers cannot be
    had in the numbers needed (the control-plane benchmark, query-count tests). Same methods, same
    ContainerInfo answers as the real driver's (label filters with None meaning "present", states
    running/exited, exit codes); every container's address is `ip`. Counts the calls made to it."""

    def __init__(self, ip: str = "127.0.0.1") -> None:
        self.ip = ip
        self.containers: dict[str, ContainerInfo] = {}  # by name
        self.calls: Counter[str] = Counter()

    def add(
        self, name: str, labels: Mapping[str, str], *, status: str = "running", exit_code: int | None = None
    ) -> None:
        self.containers[name] = ContainerInfo(
            id=uuid.uuid4().hex + uuid.uuid4().hex, name=name, image="registry.local/bench:1", status=status,
            ip=self.ip, labels=dict(labels), exit_code=exit_code, started_at=datetime.now(UTC),
            networks={"ps-network": self.ip},
        )  # fmt: skip

    def exit(self, name: str, code: int = 0) -> None:
        """The container's process ends with `code`, as a finished cron command or a crash would."""
        self.containers[name] = replace(self.containers[name], status="exited", exit_code=code)

    def _find(self, name_or_id: str) -> Any:
        info = self.containers.get(name_or_id)
        if info is None:
            info = next((c for c in self.containers.values() if c.id == name_or_id), None)
        return info

    def ping(self) -> bool:
        return True

    def ensure_image(self, image: str, *, auth: Any = None, always_pull: bool = False) -> str:
        self.calls["ensure_image"] += 1
        return "sha256:" + "0" * 64

    def image_digest(self, image: str) -> str | None:
        return "registry.local/bench@sha256:" + "0" * 64

    def ensure_network(self, name: str, labels: Mapping[str, str]) -> None:
        self.calls["ensure_network"] += 1

    def remove_network(self, name: str) -> None:
        pass

    def run(self, spec: Any) -> Any:
        self.calls["run"] += 1
        self.add(spec.name, spec.labels)
        return self.containers[spec.name]

    def inspect(self, name_or_id: str) -> Any:
        self.calls["inspect"] += 1
        return self._find(name_or_id)

    def list(self, labels: Mapping[str, str | None]) -> list[Any]:
        self.calls["list"] += 1
        return [
            info
            for info in self.containers.values()
            if all(k in info.labels and (v is None or info.labels[k] == v) for k, v in labels.items())
        ]

    def stop(self, name_or_id: str, timeout: int = 10) -> None:
        self.calls["stop"] += 1
        info = self._find(name_or_id)
        if info is not None and info.status == "running":
            self.containers[info.name] = replace(info, status="exited", exit_code=137)

    def remove(self, name_or_id: str) -> None:
        self.calls["remove"] += 1
        info = self._find(name_or_id)
        if info is not None:
            del self.containers[info.name]

    def logs(self, name_or_id: str, *, tail: int = 100) -> list[Any]:
        self.calls["logs"] += 1
        if self._find(name_or_id) is None:
            raise ContainerNotFound(name_or_id)
        return []

    def stats(self, name_or_id: str) -> Any:
        return None

    def connect(self, network: str, name_or_id: str) -> None:
        pass


_COLUMNS = (
    "be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight "
    "srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state "
    "srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port "
    "srv_check_addr srv_agent_addr srv_agent_port"
)
_ADMIN_BITS = {"ready": 0, "drain": 0x08, "maint": 0x01}


class InMemoryRuntimeRouter(HAProxyRouter):
    """A stand-in for the running HAProxy only, where one cannot run with the numbers needed: the
    real HAProxyRouter (validation, config and map render, model files, `haproxy -c`, its locking),
    whose process and runtime API are answered from memory the way HAProxy 2.6 answers them (`show
    servers state`, `add server`, `del server`, a reload...). Counts the runtime commands sent."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.live: dict[str, dict[str, dict[str, Any]]] = {}
        self.commands: Counter[str] = Counter()

    def _load_live(self, backends: Any) -> None:
        self.live = {
            b.name: {s.name: {"addr": s.address, "port": s.port, "weight": s.weight, "admin": 0} for s in b.servers}
            for b in backends
        }

    def _running(self) -> bool:
        return True

    def is_running(self) -> bool:
        return True

    def _haproxy_alive(self) -> bool:
        return True

    def _live_backends(self) -> set[str] | None:
        return set(self.live)

    def _start(self) -> None:
        self.commands["start"] += 1
        self._load_live(self._load_model())

    def _reload(self, backends: Any) -> None:
        self.commands["reload"] += 1
        self._load_live(backends)

    def _save_server_state(self, backends: Any) -> None:
        pass

    def stop(self) -> None:
        self.live.clear()

    def _ask_worker(self, command: str, *, read: bool) -> str:
        words = command.split()
        self.commands[" ".join(words[:2])] += 1
        if words[:3] == ["show", "servers", "state"]:
            names = words[3:] or list(self.live)
            if any(n not in self.live for n in names):
                return "Can't find backend.\n"
            rows = [
                f"{i} {b} {j} {s} {v['addr']} 2 {v['admin']} {v['weight']} {v['weight']} 0 1 0 0 0 0 0 0 - "
                f"{v['port']} - 0 0 - - 0"
                for i, b in enumerate(names, 1)
                for j, (s, v) in enumerate(self.live[b].items(), 1)
            ]
            return "\n".join(["1", f"# {_COLUMNS}", *rows]) + "\n"
        if words[:2] == ["show", "stat"]:
            backends = list(self.live) if words[2] == "-1" else [words[2]]
            rows = [f"{b},{s},0,0,0" for b in backends if b in self.live for s in self.live[b]]
            return "\n".join(["# pxname,svname,qcur,qmax,scur", *rows]) + "\n"
        target = next((w for w in words if "/" in w), "")
        backend, _, server = target.partition("/")
        if backend not in self.live:
            return "No such backend.\n"
        servers = self.live[backend]
        if words[:2] == ["add", "server"]:
            if server in servers:
                return "Already exists a server with the same name in backend.\n"
            address, _, port = words[3].rpartition(":")
            servers[server] = {"addr": address, "port": int(port), "weight": int(words[5]), "admin": 0x01}
            return "New server registered.\n"
        if server not in servers:
            return "No such server.\n"
        if words[:2] == ["del", "server"]:
            del servers[server]
            return "Server deleted.\n"
        if words[:2] == ["enable", "server"]:
            servers[server]["admin"] = 0
        elif words[:2] == ["set", "server"] and words[3] == "state":
            servers[server]["admin"] = _ADMIN_BITS[words[4]]
        elif words[:2] == ["set", "server"] and words[3] == "addr":
            servers[server].update(addr=words[4], port=int(words[6]))
            return "IP changed\n"
        elif words[:2] == ["set", "weight"]:
            servers[server]["weight"] = int(words[3])
        return ""

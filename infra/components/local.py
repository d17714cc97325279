"""The local target: the control plane as a process on this machine. No cloud account, no cluster.

Replicas are processes the control plane starts itself (its `local` provider), so the platform is one
resource; the declared deployments are created in it like on every other target.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pulumi

from inferstack.declared.stackfile import LocalSettings, PlatformSettings
from local_process import LocalControlPlane, LocalControlPlaneArgs


@dataclass(frozen=True)
class LocalPlatformArgs:
    stack: str
    platform: PlatformSettings
    settings: LocalSettings
    api_key: pulumi.Input[str]


class LocalPlatform(pulumi.ComponentResource):
    url: pulumi.Output[str]
    home: str

    def __init__(self, name: str, args: LocalPlatformArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("inferstack:local:Platform", name, None, opts)
        s = args.settings
        # One home per stack: two local stacks never share a database or a port by accident.
        self.home = s.home or str(Path("~/.inferstack").expanduser() / args.stack)
        process = LocalControlPlane(
            f"{name}-control-plane",
            LocalControlPlaneArgs(command=list(s.command), host=s.host, port=s.port, home=self.home,
                                  tenant=args.platform.tenant, startup_timeout_s=s.startup_timeout_s,
                                  api_key=args.api_key),
            pulumi.ResourceOptions(parent=self),
        )
        self.url = process.url
        self.register_outputs({"url": self.url, "home": self.home, "log_path": process.log_path})

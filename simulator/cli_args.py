"""The flags of ``hotplug-agent simulate`` and ``hotplug-agent cluster``, apart from the simulator.

Kept free of the simulator's imports (kubernetes-asyncio's client alone takes ~0.3 s) so that building
the agent's command line, ``--help`` included, stays fast; ``simulator.cli`` uses the parsed values.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def _add_common(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("simulated cluster")
    g.add_argument(
        "--kubevirt-version", default="v1.5.2", help="KubeVirt version to simulate (default v1.5.2)"
    )
    g.add_argument(
        "--workload-update-methods",
        default="",
        help="KubeVirt CR workloadUpdateMethods, comma list (e.g. LiveMigrate)",
    )
    g.add_argument("--nodes", type=int, default=4, help="number of nodes (default 4)")
    g.add_argument("--vms", type=int, default=None, help="number of VMs to create")
    g.add_argument("--namespaces", default="team-a,team-b,team-c,team-d", help="namespaces for the VMs")
    g.add_argument(
        "--migration-mean-seconds",
        type=float,
        default=None,
        help="mean migration duration (cluster 2 s, simulate 1 s)",
    )
    g.add_argument(
        "--migration-distribution",
        choices=["fixed", "uniform", "exponential", "lognormal"],
        default="lognormal",
    )
    g.add_argument("--failure-rate", type=float, default=None, help="share of migrations that fail")
    g.add_argument("--stuck-rate", type=float, default=0.0, help="share of migrations that stay Running")
    g.add_argument(
        "--dnc", action="store_true", help="run the Multus dynamic networks controller (in-place bridge)"
    )
    g.add_argument(
        "--parallel-migrations-per-cluster", type=int, default=None, help="KubeVirt CR limit (default 5)"
    )
    g.add_argument(
        "--parallel-outbound-migrations-per-node",
        type=int,
        default=None,
        help="KubeVirt CR limit (default 2)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed (scenario and cluster)")
    g.add_argument(
        "--time-scale",
        type=float,
        default=0.1,
        help="scale of KubeVirt's own periods (15 s grace, 5 s updater)",
    )
    g.add_argument("--kubeconfig-out", type=Path, default=None, help="write the cluster's kubeconfig here")
    g.add_argument(
        "--port", type=int, default=0, help="API server port on 127.0.0.1 (default: any free port)"
    )


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``hotplug-agent cluster``."""
    _add_common(parser)


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``hotplug-agent simulate``."""
    _add_common(parser)
    g = parser.add_argument_group("scenario")
    g.add_argument("--report", type=Path, default=None, help="write the JSON ground-truth report here")
    g.add_argument(
        "--timeout", type=float, default=120.0, help="give up after this many seconds (default 120)"
    )
    g.add_argument(
        "--quiet-seconds",
        type=float,
        default=5.0,
        help="end when nothing completed and no migration was in flight for this long (default 5)",
    )
    g.add_argument(
        "--request-window-seconds", type=float, default=2.0, help="spread user edits over this window"
    )

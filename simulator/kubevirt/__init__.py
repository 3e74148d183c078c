"""Simulated KubeVirt: controllers that talk to the API server through kubernetes-asyncio, admission hooks,
and the pure rules they apply (``pci``, ``rules``, ``status``). See docs/simulator.md."""

"""Real components on loopback for the real test tiers and benchmarks: kube-apiserver + etcd
(:mod:`~simulator.real.controlplane`), KubeVirt's virt-api and virt-controller
(:mod:`~simulator.real.kubevirt`), and the node side that cannot run here (:mod:`~simulator.real.node`)."""

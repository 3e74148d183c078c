// Module root of the KubeVirt wrapper modules. This file is not read by any build: build.sh and
// update-modules.sh pass -modfile=go.<version>.mod, one module file (and go.sum) per pinned release,
// so one generator (kvgen/) serves every release. See ../build.sh.
module hotplug-agent.local/kubevirt

go 1.24.0

"""A real Kubernetes control plane for kubetask's tests: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler from the official Go modules (main.go, built by
scripts/cluster.sh), started on 127.0.0.1 by control_plane.py, with a process node agent
(node_agent.py, kubelet.py, containers.py) whose pods run as local processes, and
bootstrap.py to install kubetask's namespace, the chart's RBAC and the artifacts claim."""

// Command kubecluster is one binary for a real Kubernetes control plane, built from the
// official Go modules (k8s.io/kubernetes and go.etcd.io/etcd at the versions go.mod pins).
// It is test infrastructure for kubetask, not product: `kubecluster COMPONENT FLAGS...`
// runs etcd, kube-apiserver, kube-controller-manager or kube-scheduler unchanged, as the
// upstream binaries would. One link instead of four keeps a cold build within reach of a
// 2-core machine.
//
// One deliberate difference, the one upstream's own test/integration/job makes: the Job
// controller's pod-failure back-off (10 s doubling to 10 min, a package variable, not a
// flag) can be shortened with KUBECLUSTER_POD_FAILURE_BACKOFF (a Go duration such as
// "1s"), so that retry tests take seconds. Unset, the real default stands.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
	_ "time/tzdata"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	jobcontroller "k8s.io/kubernetes/pkg/controller/job"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintf(os.Stderr, "usage: %s etcd|kube-apiserver|kube-controller-manager|kube-scheduler [flags]\n", filepath.Base(os.Args[0]))
		os.Exit(2)
	}
	component, args := os.Args[1], os.Args[2:]
	switch component {
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, args...))
	case "kube-apiserver":
		run(apiserver.NewAPIServerCommand(), args)
	case "kube-controller-manager":
		if value := os.Getenv("KUBECLUSTER_POD_FAILURE_BACKOFF"); value != "" {
			backoff, err := time.ParseDuration(value)
			if err != nil {
				fmt.Fprintf(os.Stderr, "KUBECLUSTER_POD_FAILURE_BACKOFF: %v\n", err)
				os.Exit(2)
			}
			jobcontroller.DefaultJobPodFailureBackOff = backoff
		}
		run(controllermanager.NewControllerManagerCommand(), args)
	case "kube-scheduler":
		run(scheduler.NewSchedulerCommand(), args)
	default:
		fmt.Fprintf(os.Stderr, "unknown component %q\n", component)
		os.Exit(2)
	}
}

func run(cmd *cobra.Command, args []string) {
	cmd.SetArgs(args)
	os.Exit(cli.Run(cmd))
}

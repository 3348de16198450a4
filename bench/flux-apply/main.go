// Command flux-apply applies a directory of manifests with Flux's apply engine
// (github.com/fluxcd/pkg/ssa ResourceManager.ApplyAllStaged), the way Flux's
// kustomize-controller does, so plumb's benchmark can compare with it on the
// same cluster and the same files.
//
//	flux-apply -kubeconfig PATH -namespace NS DIR
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/pkg/ssa"
	ssautil "github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

func main() {
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	namespace := flag.String("namespace", "default", "namespace for namespaced objects without one")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: flux-apply -kubeconfig PATH -namespace NS DIR")
		os.Exit(2)
	}
	if err := run(*kubeconfig, *namespace, flag.Arg(0)); err != nil {
		fmt.Fprintln(os.Stderr, "flux-apply:", err)
		os.Exit(1)
	}
}

func run(kubeconfig, namespace, dir string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS = 1000
	cfg.Burst = 2000
	httpClient, err := rest_http(cfg)
	if err != nil {
		return err
	}
	mapper, err := apiutil.NewDynamicRESTMapper(cfg, httpClient)
	if err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Mapper: mapper})
	if err != nil {
		return err
	}
	var objects []*unstructured.Unstructured
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return err
	}
	sort.Strings(files)
	for _, f := range files {
		r, err := os.Open(f)
		if err != nil {
			return err
		}
		objs, err := ssautil.ReadObjects(r)
		r.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		objects = append(objects, objs...)
	}
	for _, o := range objects {
		if o.GetNamespace() == "" && !strings.EqualFold(o.GetKind(), "Namespace") {
			o.SetNamespace(namespace)
		}
	}
	poller := polling.NewStatusPoller(c, mapper, polling.Options{})
	manager := ssa.NewResourceManager(c, poller, ssa.Owner{Field: "flux", Group: "kustomize.toolkit.fluxcd.io"})
	manager.SetConcurrency(10)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	changes, err := manager.ApplyAllStaged(ctx, objects, ssa.DefaultApplyOptions())
	if err != nil {
		return err
	}
	counts := map[string]int{}
	for _, e := range changes.Entries {
		counts[string(e.Action)]++
	}
	fmt.Println(counts)
	return nil
}

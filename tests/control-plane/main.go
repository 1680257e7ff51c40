// Command control-plane runs a real kube-apiserver over an embedded etcd on
// loopback, for the operator's tests, demo and local use. It is the same
// server a cluster runs, built from the official Kubernetes Go modules; only
// the controller-manager and kubelet are absent (no pods run, no garbage
// collection), which an operator's tests do not need.
//
// It writes into --dir: generated certificates, the service-account signing
// key, an admin kubeconfig (`kubeconfig`) and, once /readyz answers, a file
// `ready` holding the server URL.
//
// Every start is a fresh cluster, except with --keep-data: then the etcd data,
// the certificates and the etcd ports of the previous run are kept, so a
// restart (with --port set to the old port) is what a cluster's control-plane
// restart is to its clients: the same objects, URL and credentials.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"

	_ "k8s.io/component-base/logs/json/register"
)

func main() {
	dir := flag.String("dir", "", "state directory (certificates, etcd data, kubeconfig)")
	port := flag.Int("port", 0, "kube-apiserver secure port on 127.0.0.1 (0: a free one)")
	verbosity := flag.Int("v", 0, "kube-apiserver log verbosity")
	keepData := flag.Bool("keep-data", false, "restart on the previous run's etcd data and certificates")
	flag.Parse()
	if *dir == "" {
		log.Fatal("--dir is required")
	}
	if err := run(*dir, *port, *verbosity, *keepData); err != nil {
		log.Fatalf("control-plane: %v", err)
	}
}

func run(dir string, port, verbosity int, keepData bool) error {
	// A fresh cluster on every start: stale state from a crashed run must not leak in.
	stale := []string{"etcd", "ready", "kubeconfig", "etcd-ports"}
	if keepData {
		stale = []string{"ready"}
	}
	for _, name := range stale {
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return err
		}
		port = p
	}
	pki, err := generatePKI(filepath.Join(dir, "pki"), keepData)
	if err != nil {
		return fmt.Errorf("generating certificates: %w", err)
	}

	etcd, etcdURL, err := startEtcd(filepath.Join(dir, "etcd"), filepath.Join(dir, "etcd-ports"))
	if err != nil {
		return fmt.Errorf("starting etcd: %w", err)
	}
	defer etcd.Close()

	serverURL := fmt.Sprintf("https://127.0.0.1:%d", port)
	if err := writeKubeconfig(filepath.Join(dir, "kubeconfig"), serverURL, pki); err != nil {
		return err
	}

	cmd := app.NewAPIServerCommand()
	cmd.SetArgs(apiserverArgs(port, etcdURL, pki, verbosity))
	done := make(chan int, 1)
	go func() { done <- cli.Run(cmd) }()

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	readyErr := make(chan error, 1)
	go func() { readyErr <- waitReady(ctx, serverURL, pki) }()

	select {
	case code := <-done:
		return fmt.Errorf("kube-apiserver exited with code %d before it was ready", code)
	case err := <-readyErr:
		if err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "ready"), []byte(serverURL+"\n"), 0o600); err != nil {
		return err
	}
	log.Printf("control-plane ready at %s (etcd %s)", serverURL, etcdURL)
	// kube-apiserver installs its own SIGTERM/SIGINT handler and returns from
	// cli.Run once it has shut down; etcd is closed by the deferred Close.
	if code := <-done; code != 0 {
		return fmt.Errorf("kube-apiserver exited with code %d", code)
	}
	return nil
}

// apiserverArgs mirrors the flags controller-runtime's envtest gives
// kube-apiserver, plus RBAC and service-account token signing.
func apiserverArgs(port int, etcdURL string, pki *PKI, verbosity int) []string {
	return []string{
		"--advertise-address=127.0.0.1",
		"--bind-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--etcd-servers=" + etcdURL,
		"--cert-dir=" + pki.Dir,
		"--tls-cert-file=" + pki.ServingCert,
		"--tls-private-key-file=" + pki.ServingKey,
		"--client-ca-file=" + pki.CACert,
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		// No controller-manager runs, and the endpoint reconciler refuses a loopback address.
		"--endpoint-reconciler-type=none",
		"--authorization-mode=RBAC",
		// No controller-manager runs, so nothing would create the default
		// ServiceAccount objects this admission plugin waits for.
		"--disable-admission-plugins=ServiceAccount",
		"--service-account-issuer=https://127.0.0.1:" + fmt.Sprint(port),
		"--service-account-key-file=" + pki.SAPublicKey,
		"--service-account-signing-key-file=" + pki.SAPrivateKey,
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		fmt.Sprintf("--v=%d", verbosity),
	}
}

// etcdPorts gives the client and peer ports recorded in portsFile by a previous
// run (the member's stored peer URL stays valid on a restart), or two free ones.
func etcdPorts(portsFile string) (int, int, error) {
	if b, err := os.ReadFile(portsFile); err == nil {
		var client, peer int
		if _, err := fmt.Sscanf(string(b), "%d %d", &client, &peer); err == nil {
			return client, peer, nil
		}
	}
	client, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	peer, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	return client, peer, os.WriteFile(portsFile, []byte(fmt.Sprintf("%d %d\n", client, peer)), 0o600)
}

func startEtcd(dataDir, portsFile string) (*embed.Etcd, string, error) {
	clientPort, peerPort, err := etcdPorts(portsFile)
	if err != nil {
		return nil, "", err
	}
	cfg := embed.NewConfig()
	cfg.Dir = dataDir
	cfg.LogLevel = "error"
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Tests create and throw away many objects: keep the database small.
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "5m"
	cfg.UnsafeNoFsync = true // a throwaway test store; fsync only costs time
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return nil, "", fmt.Errorf("etcd not ready after 60s")
	}
	return e, clientURL.String(), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

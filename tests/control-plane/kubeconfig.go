package main

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"time"
)

func writeKubeconfig(path, server string, p *PKI) error {
	read := func(f string) (string, error) {
		b, err := os.ReadFile(f)
		return base64.StdEncoding.EncodeToString(b), err
	}
	ca, err := read(p.CACert)
	if err != nil {
		return err
	}
	cert, err := read(p.AdminCert)
	if err != nil {
		return err
	}
	key, err := read(p.AdminKey)
	if err != nil {
		return err
	}
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: local
  context:
    cluster: local
    user: admin
    namespace: default
current-context: local
`, server, ca, cert, key)
	return os.WriteFile(path, []byte(cfg), 0o600)
}

// waitReady polls /readyz with the admin certificate until it answers 200.
func waitReady(ctx context.Context, server string, p *PKI) error {
	tlsCfg, err := adminTLS(p)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	for {
		resp, err := client.Get(server + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready at %s: %w", server, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}

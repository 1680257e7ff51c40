// Command kstatus computes the kstatus status (the one Flux, kpt and
// cli-utils' status poller use) of Kubernetes objects read as JSON on stdin:
// one object, a list (`kind: ...List` with `items`), or several objects one
// after another. It prints one JSON line per object:
//
//	{"kind":"SpaceRoomLink","name":"team","status":"Failed","message":"..."}
//
// The tests of exo-matrix-operator run it on objects read from the test API
// server, so the conditions the operator writes are judged by the library
// itself, not by a reading of its rules.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	enc := json.NewEncoder(out)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading JSON: %w", err)
		}
		// Kubernetes' decoder: whole numbers become int64 (metadata.generation), as unstructured expects.
		var obj map[string]interface{}
		if err := utiljson.Unmarshal(raw, &obj); err != nil {
			return fmt.Errorf("reading JSON: %w", err)
		}
		items := []interface{}{obj}
		if list, ok := obj["items"].([]interface{}); ok {
			items = list
		}
		for _, item := range items {
			m, ok := item.(map[string]interface{})
			if !ok {
				return fmt.Errorf("not an object: %v", item)
			}
			u := &unstructured.Unstructured{Object: m}
			res, err := status.Compute(u)
			if err != nil {
				return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
			}
			if err := enc.Encode(result{u.GetKind(), u.GetName(), res.Status.String(), res.Message}); err != nil {
				return err
			}
		}
	}
}

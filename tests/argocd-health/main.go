// Command argocd-health runs an Argo CD resource health check (Lua) the way
// Argo CD does: with gopher-lua, the global `obj` set to the object, only the
// base, table and package libraries open, a one-second limit, and the returned
// table read as {status, message}. Objects come as JSON on stdin (one, a list
// with `items`, or several in a row); one JSON line is printed per object:
//
//	{"kind":"SpaceRoomLink","name":"team","status":"Degraded","message":"..."}
//
// Usage: argocd-health SCRIPT.lua < objects.json
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

type result struct {
	Kind    string `json:"kind"`
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
}

// The statuses Argo CD accepts from a health script.
var valid = map[string]bool{"Healthy": true, "Progressing": true, "Degraded": true, "Suspended": true, "Missing": true, "Unknown": true}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health SCRIPT.lua < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err == nil {
		err = run(string(script), os.Stdin, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-health:", err)
		os.Exit(1)
	}
}

func run(script string, in io.Reader, out io.Writer) error {
	dec := json.NewDecoder(in)
	enc := json.NewEncoder(out)
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("reading JSON: %w", err)
		}
		items := []any{obj}
		if list, ok := obj["items"].([]any); ok {
			items = list
		}
		for _, item := range items {
			m, ok := item.(map[string]any)
			if !ok {
				return fmt.Errorf("not an object: %v", item)
			}
			res, err := health(script, m)
			if err != nil {
				return err
			}
			if err := enc.Encode(res); err != nil {
				return err
			}
		}
	}
}

// health mirrors Argo CD's util/lua VM.runLua and ExecuteHealthLua.
func health(script string, obj map[string]any) (result, error) {
	meta, _ := obj["metadata"].(map[string]any)
	kind, _ := obj["kind"].(string)
	name, _ := meta["name"].(string)
	res := result{Kind: kind, Name: name}

	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{{lua.LoadLibName, lua.OpenPackage}, {lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true}, lua.LString(lib.name)); err != nil {
			return res, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decodeValue(l, obj))
	if err := l.DoString(script); err != nil {
		return res, fmt.Errorf("%s %s: %w", kind, name, err)
	}
	table, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return res, fmt.Errorf("%s %s: the script returned %s, not a table", kind, name, l.Get(-1).Type())
	}
	res.Status = lua.LVAsString(table.RawGetString("status"))
	res.Message = lua.LVAsString(table.RawGetString("message"))
	if !valid[res.Status] {
		return res, fmt.Errorf("%s %s: %q is not a health status Argo CD knows", kind, name, res.Status)
	}
	return res, nil
}

// decodeValue is Argo CD's conversion of an object into Lua values.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	}
	return lua.LNil
}

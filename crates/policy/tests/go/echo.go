// A Go net/http server that answers every request with what it read:
// method, request target and body (hex), or the error reading the body.
// Built and run by crates/policy/tests/go_framing.rs; only the standard
// library, so `go build` works offline.
package main

import (
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	l, err := net.Listen("unix", os.Args[1])
	if err != nil {
		panic(err)
	}
	os.Stdout.WriteString("ready\n")
	http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		out := map[string]string{"method": r.Method, "uri": r.RequestURI, "body": hex.EncodeToString(body)}
		if err != nil {
			out["err"] = err.Error()
		}
		b, _ := json.Marshal(out)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
}

// h2client: a stdlib-only Go client of the kube-apiserver that keeps one HTTP/2 connection,
// as client-go does (net/http's Transport, ForceAttemptHTTP2 with a custom TLS config).
//
// It alternates reads (GET /api/v1/namespaces/NS/configmaps?limit=1) and writes (POST a
// ConfigMap with a unique name into NS) and prints one JSON line per call on stdout:
//
//	{"op":"read","ok":true,"status":200,"proto":"HTTP/2.0","reused":true,"ms":3.1}
//	{"op":"write","ok":false,"status":0,"err":"...","name":"hkp-go-...-17","ms":2.0}
//
// and one {"summary":...} line at the end. It stops on SIGTERM/SIGINT, when its stdin closes
// (its parent died), after -duration or after -max-calls, whichever comes first.
// Built and run by lab/clients.py (test tooling, not part of the product).
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

type record struct {
	Op     string  `json:"op"`
	OK     bool    `json:"ok"`
	Status int     `json:"status"`
	Proto  string  `json:"proto,omitempty"`
	Reused bool    `json:"reused"`
	Err    string  `json:"err,omitempty"`
	Name   string  `json:"name,omitempty"`
	Ms     float64 `json:"ms"`
}

type summary struct {
	Calls  int     `json:"calls"`
	Failed int     `json:"failed"`
	Conns  int     `json:"conns"`
	Reason string  `json:"reason"`
	CPUs   float64 `json:"cpu_s"` // user + system CPU time of this process
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "h2client: "+format+"\n", args...)
	os.Exit(2)
}

func tlsConfig(caFile, certFile, keyFile string, verifyHostname bool) *tls.Config {
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		fail("reading the CA: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		fail("no certificate in %s", caFile)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		fail("loading the client certificate: %v", err)
	}
	conf := &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if !verifyHostname {
		// The chain is still verified against the CA, only the name is not matched.
		conf.InsecureSkipVerify = true
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	}
	return conf
}

func main() {
	server := flag.String("server", "", "https://HOST:PORT")
	caFile := flag.String("ca", "", "CA bundle (PEM)")
	certFile := flag.String("cert", "", "client certificate (PEM)")
	keyFile := flag.String("key", "", "client key (PEM)")
	ns := flag.String("namespace", "hakube-probe", "namespace of the ConfigMaps")
	prefix := flag.String("prefix", "hkp-go", "name prefix of the ConfigMaps written")
	label := flag.String("label", "", "KEY=VALUE label put on every ConfigMap written")
	interval := flag.Duration("interval", 50*time.Millisecond, "time between two calls")
	writeEvery := flag.Int("write-every", 3, "every Nth call is a write (0: reads only)")
	duration := flag.Duration("duration", 30*time.Minute, "stop after this long")
	maxCalls := flag.Int("max-calls", 100000, "stop after this many calls")
	timeout := flag.Duration("timeout", 10*time.Second, "timeout of one call")
	verifyHostname := flag.Bool("verify-hostname", true, "match the server certificate's SANs to the host")
	flag.Parse()
	if *server == "" || *caFile == "" || *certFile == "" || *keyFile == "" {
		fail("-server, -ca, -cert and -key are required")
	}

	transport := &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     tlsConfig(*caFile, *certFile, *keyFile, *verifyHostname),
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 25, // client-go's value
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	client := &http.Client{Transport: transport, Timeout: *timeout}

	labels := map[string]string{}
	if k, v, found := strings.Cut(*label, "="); found {
		labels[k] = v
	}

	stop := make(chan string, 3)
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() { stop <- "signal " + (<-signals).String() }()
	go func() { io.Copy(io.Discard, os.Stdin); stop <- "stdin closed" }()
	deadline := time.After(*duration)

	out := json.NewEncoder(os.Stdout) // os.Stdout is unbuffered: one write per line
	sum := summary{}
	listURL := fmt.Sprintf("%s/api/v1/namespaces/%s/configmaps", *server, *ns)
	ticker := time.NewTicker(*interval)
	defer ticker.Stop()

	for i := 1; ; i++ {
		rec := record{Op: "read"}
		var req *http.Request
		var err error
		if *writeEvery > 0 && i%*writeEvery == 0 {
			rec.Op = "write"
			rec.Name = fmt.Sprintf("%s-%d", *prefix, i)
			body, _ := json.Marshal(map[string]interface{}{
				"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]interface{}{"name": rec.Name, "labels": labels},
				"data":     map[string]string{"n": fmt.Sprint(i)},
			})
			req, err = http.NewRequest("POST", listURL, bytes.NewReader(body))
			if err == nil {
				req.Header.Set("Content-Type", "application/json")
			}
		} else {
			req, err = http.NewRequest("GET", listURL+"?limit=1", nil)
		}
		if err != nil {
			fail("building a request: %v", err)
		}
		req.Header.Set("Accept", "application/json")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				rec.Reused = info.Reused
				if !info.Reused {
					sum.Conns++
				}
			},
		}))

		started := time.Now()
		resp, err := client.Do(req)
		if err == nil {
			rec.Status, rec.Proto = resp.StatusCode, resp.Proto
			text, readErr := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if readErr != nil {
				err = readErr
			} else if resp.StatusCode < 200 || resp.StatusCode >= 300 {
				rec.Err = fmt.Sprintf("HTTP %d: %.160s", resp.StatusCode, strings.TrimSpace(string(text)))
			}
		}
		if err != nil {
			rec.Err = err.Error()
		}
		rec.OK = rec.Err == ""
		rec.Ms = float64(time.Since(started).Microseconds()) / 1000
		sum.Calls++
		if !rec.OK {
			sum.Failed++
		}
		out.Encode(rec)

		if sum.Calls >= *maxCalls {
			sum.Reason = "max-calls"
			break
		}
		select {
		case sum.Reason = <-stop:
		case <-deadline:
			sum.Reason = "duration"
		case <-ticker.C:
		}
		if sum.Reason != "" {
			break
		}
	}
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		sum.CPUs = float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
	}
	out.Encode(map[string]summary{"summary": sum})
}

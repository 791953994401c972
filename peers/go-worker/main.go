// go-worker is the peer baseline: the Go 1.8 design the original article
// measured. net/http serves the listener inherited from Server::Starter
// (SERVER_STARTER_PORT), and SIGTERM calls Server.Shutdown, which closes idle
// keep-alive connections at once. With -tls it serves HTTPS (HTTP/2 by ALPN)
// with a self-signed certificate made at start.
//
// Build (standard library only): GO111MODULE=off go build -o go-worker main.go
// Run with: start_server --port 127.0.0.1:8080 -- ./go-worker
// or alone: ./go-worker -listen 127.0.0.1:8081
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"flag"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	useTLS := flag.Bool("tls", false, "serve HTTPS (HTTP/2 by ALPN) with a self-signed certificate")
	listen := flag.String("listen", "127.0.0.1:8080", "address to bind when SERVER_STARTER_PORT is not set")
	flag.Parse()

	ln, err := listener(*listen)
	if err != nil {
		log.Fatalf("go-worker: %v", err)
	}
	pid := os.Getpid()
	body := []byte(fmt.Sprintf("from pid %d.\n", pid))
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Gracedown-Pid", strconv.Itoa(pid))
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	})}

	// Registered before serving, so a SIGTERM right after start drains instead of killing.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
		close(done)
	}()

	log.Printf("go worker ready pid=%d listener=%s", pid, ln.Addr())
	if *useTLS {
		cert, err := selfSigned()
		if err != nil {
			log.Fatalf("go-worker: %v", err)
		}
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
		err = srv.ServeTLS(ln, "", "")
	} else {
		err = srv.Serve(ln)
	}
	if err != http.ErrServerClosed {
		log.Fatalf("go-worker: %v", err)
	}
	<-done
}

// listener takes the first socket of SERVER_STARTER_PORT, or binds addr
// when started by hand or as one instance of a fleet.
func listener(addr string) (net.Listener, error) {
	spec := os.Getenv("SERVER_STARTER_PORT")
	if spec == "" {
		return net.Listen("tcp", addr)
	}
	first := strings.Split(spec, ";")[0]
	i := strings.LastIndex(first, "=")
	if i < 0 {
		return nil, fmt.Errorf("SERVER_STARTER_PORT entry %q has no =FD", first)
	}
	fd, err := strconv.Atoi(first[i+1:])
	if err != nil {
		return nil, fmt.Errorf("SERVER_STARTER_PORT entry %q: %v", first, err)
	}
	return net.FileListener(os.NewFile(uintptr(fd), first[:i]))
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	template := x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, &template, &template, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// Command go_tls_handshake times Go's crypto/tls handshake, the counterpart of
// bench/micro_tls_handshake.py: both ends in one process over net.Pipe, a self-signed
// P-256 certificate, ALPN h2 and http/1.1 offered and configured, no session tickets
// and no verification (the vmess-tls chain's allowInsecure). It prints the process CPU
// per handshake, both sides together, for 5 passes, then what x509.ParseCertificate of
// that certificate costs (the client parses the server's certificate once per handshake;
// bench/micro_tls_handshake.py prints OpenSSL's d2i_X509 of the same kind).
//
// Build it with the Go release V2Ray 4.34 was built with (`v2ray -version` names it;
// Debian's golang-go is go1.19.8 as its v2ray package):
//
//	cd bench/go_tls_handshake && go build -o /tmp/go_tls_handshake . && /tmp/go_tls_handshake 2000
//
// GOMAXPROCS=1 keeps the two goroutines on one core, so nothing but the handshakes and
// the pipe hand-offs between them is counted.
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

// parseMicros returns the CPU microseconds of one x509.ParseCertificate of der.
func parseMicros(der []byte, count int) float64 {
	start := cpuSeconds()
	for i := 0; i < count; i++ {
		if _, err := x509.ParseCertificate(der); err != nil {
			panic(err)
		}
	}
	return (cpuSeconds() - start) / float64(count) * 1e6
}

func configs() (*tls.Config, *tls.Config) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	now := time.Now()
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "example.com"},
		DNSNames:     []string{"example.com"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	protos := []string{"h2", "http/1.1"}
	server := &tls.Config{
		Certificates:           []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		NextProtos:             protos,
		SessionTicketsDisabled: true,
	}
	client := &tls.Config{InsecureSkipVerify: true, ServerName: "example.com", NextProtos: protos}
	return server, client
}

// pass returns the CPU seconds per handshake over count handshakes.
func pass(server, client *tls.Config, count int) float64 {
	start := cpuSeconds()
	for i := 0; i < count; i++ {
		a, b := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- tls.Server(b, server).Handshake() }()
		if err := tls.Client(a, client).Handshake(); err != nil {
			panic(err)
		}
		if err := <-done; err != nil {
			panic(err)
		}
		a.Close()
		b.Close()
	}
	return (cpuSeconds() - start) / float64(count)
}

func main() {
	count := 2000
	if len(os.Args) > 1 {
		n, err := strconv.Atoi(os.Args[1])
		if err != nil || n <= 0 {
			fmt.Fprintln(os.Stderr, "usage: go_tls_handshake [handshakes]")
			os.Exit(2)
		}
		count = n
	}
	runtime.GOMAXPROCS(1)
	server, client := configs()
	pass(server, client, 200) // warm up
	fmt.Printf("%s; %d handshakes per pass\n", runtime.Version(), count)
	for p := 0; p < 5; p++ {
		fmt.Printf("both sides %4.0f us CPU per handshake\n", pass(server, client, count)*1e6)
	}
	der := server.Certificates[0].Certificate[0]
	fmt.Printf("client's x509.ParseCertificate of the server certificate %4.0f us CPU\n", parseMicros(der, count))
}

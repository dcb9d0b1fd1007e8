// Command tcpbench measures new TCP connections per second and request
// latency: each operation connects, sends one line, reads the reply and
// closes. "tcpbench serve ADDR" answers such requests.
//
//	tcpbench serve 198.51.100.21:80
//	tcpbench run -c 8 -d 5s 203.0.113.10:80 [more targets, used in turn]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	switch os.Args[1] {
	case "serve":
		if len(os.Args) != 3 {
			usage()
		}
		err := serve(os.Args[2]) // returns only on failure
		fmt.Fprintln(os.Stderr, "tcpbench serve:", err)
		os.Exit(1)
	case "run":
		fs := flag.NewFlagSet("run", flag.ExitOnError)
		conc := fs.Int("c", 8, "concurrent clients")
		dur := fs.Duration("d", 5*time.Second, "duration")
		label := fs.String("label", "", "label printed first on the result line")
		_ = fs.Parse(os.Args[2:]) // ExitOnError: it exits instead
		if fs.NArg() == 0 {
			usage()
		}
		run(*label, fs.Args(), *conc, *dur)
	default:
		usage()
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: tcpbench serve ADDR | tcpbench run [-c N] [-d DUR] [-label L] ADDR...")
	os.Exit(2)
}

func serve(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("pong " + line)) // the client counts a missing pong
		}()
	}
}

func run(label string, targets []string, conc int, dur time.Duration) {
	var next atomic.Uint64
	var errs atomic.Int64
	lat := make([][]time.Duration, conc)
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 64)
			for time.Now().Before(deadline) {
				t := targets[next.Add(1)%uint64(len(targets))]
				t0 := time.Now()
				c, err := net.DialTimeout("tcp", t, 2*time.Second)
				if err != nil {
					errs.Add(1)
					continue
				}
				c.SetDeadline(time.Now().Add(2 * time.Second))
				_, err = c.Write([]byte("ping\n"))
				if err == nil {
					_, err = c.Read(buf)
				}
				c.Close()
				if err != nil {
					errs.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		fmt.Printf("%-8s no successful connection (%d errors)\n", label, errs.Load())
		os.Exit(1)
	}
	q := func(p float64) time.Duration { return all[int(p*float64(len(all)-1))] }
	fmt.Printf("%-8s conn/s %8.0f  p50 %7.1f µs  p99 %7.1f µs  errors %d\n", label, float64(len(all))/elapsed.Seconds(),
		float64(q(0.50).Nanoseconds())/1e3, float64(q(0.99).Nanoseconds())/1e3, errs.Load())
}

// Command centrifugebench is the centrifuge server of webrtc's
// BenchmarkFanout (mode "centrifuge"): a centrifuge Node with its WebSocket
// handler on 127.0.0.1:0 and one channel, driven over stdin and stdout so
// that the benchmark measures this process's CPU and memory as it measures
// its own servers in process.
//
// It is a module of its own so that centrifuge's dependencies (newer
// x/crypto, x/net and Prometheus client) stay out of the root module's
// build; the benchmark builds it with the go command.
//
// Protocol, one line each way:
//
//	out at start:   URL <ws url>       where subscribers connect (JSON protocol)
//	in  PUB <json>  -> OK | ERR <msg>  publish <json> to channel "bench"
//	in  HEAP        -> HEAP <bytes>    heap+stacks after GC
//	in  CPU         -> CPU <ns>        user+system CPU time of this process
//
// End of input shuts the node down.
package main

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/centrifugal/centrifuge"
)

// channel is the one channel the benchmark publishes to.
const channel = "bench"

func main() {
	log.SetFlags(0)
	log.SetPrefix("centrifugebench: ")
	out := bufio.NewWriter(os.Stdout)

	node, err := centrifuge.New(centrifuge.Config{LogLevel: centrifuge.LogLevelError, LogHandler: func(e centrifuge.LogEntry) {
		log.Printf("%s: %v", e.Message, e.Fields)
	}})
	if err != nil {
		log.Fatal(err)
	}
	node.OnConnect(func(c *centrifuge.Client) {
		c.OnSubscribe(func(_ centrifuge.SubscribeEvent, cb centrifuge.SubscribeCallback) {
			cb(centrifuge.SubscribeReply{}, nil)
		})
	})
	if err := node.Run(); err != nil {
		log.Fatal(err)
	}
	ws := centrifuge.NewWebsocketHandler(node, centrifuge.WebsocketConfig{})
	// Anonymous users: the benchmark's other servers check no token either
	// (auth is per connection, not per message).
	anon := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.ServeHTTP(w, r.WithContext(centrifuge.SetCredentials(r.Context(), &centrifuge.Credentials{})))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/connection/websocket", anon)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 64<<10), 1<<20)
	fmt.Fprintf(out, "URL ws://%s/connection/websocket\n", ln.Addr())
	_ = out.Flush()
	for in.Scan() {
		cmd, arg, _ := strings.Cut(in.Text(), " ")
		switch cmd {
		case "PUB":
			if _, err := node.Publish(channel, []byte(arg)); err != nil {
				fmt.Fprintf(out, "ERR %v\n", err)
			} else {
				fmt.Fprintln(out, "OK")
			}
		case "HEAP":
			fmt.Fprintf(out, "HEAP %d\n", heapAndStacks())
		case "CPU":
			fmt.Fprintf(out, "CPU %d\n", cpuTime())
		default:
			fmt.Fprintf(out, "ERR unknown command %q\n", cmd)
		}
		_ = out.Flush()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Close()
	_ = node.Shutdown(ctx)
}

// heapAndStacks collects twice, so that sync.Pools (which keep a victim
// generation) are empty, and returns the memory in use.
func heapAndStacks() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

func cpuTime() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

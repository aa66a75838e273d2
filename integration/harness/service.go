package harness

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// ServicePort is where each site's application answers /health.
const ServicePort = "8080"

// service stands for a site's application: it answers /health with 200
// while up and 503 while down. It lives in the harness's process but
// listens inside the site's namespace, so the site's faults apply to it.
type service struct {
	site string
	down atomic.Bool
	srv  *http.Server
}

func startService(site, addr string) (*service, error) {
	l, err := listenIn(netnsName(site), net.JoinHostPort(addr, ServicePort))
	if err != nil {
		return nil, err
	}
	s := &service{site: site}
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) {
		if s.down.Load() {
			http.Error(w, site+" down", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(site + " ok\n"))
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = s.srv.Serve(l) }() // ends at close
	return s, nil
}

// close stops the service at once: probes in flight just fail.
func (s *service) close() {
	_ = s.srv.Close() // only the listener's close error, which says nothing
}

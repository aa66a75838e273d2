package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sitewitness/witness/cluster/clustertest"
)

func addrs(t *testing.T, n int) string {
	var out []string
	for range n {
		out = append(out, clustertest.FreeAddr(t))
	}
	return strings.Join(out, ",")
}

// buildBinaries builds witnessd and witnessctl as a user would get them.
func buildBinaries(t *testing.T) (witnessd, witnessctl string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "github.com/sitewitness/witness/cmd/witnessd", "github.com/sitewitness/witness/cmd/witnessctl")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "witnessd"), filepath.Join(dir, "witnessctl")
}

func dig(t *testing.T, server, name, qtype string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(server)
	out, err := exec.Command("dig", "@"+host, "-p", port, name, qtype, "+short", "+time=1", "+tries=1").Output()
	if err != nil {
		t.Logf("dig %s %s: %v", name, qtype, err)
	}
	return strings.TrimSpace(string(out))
}

type devStatus struct {
	Leader string `json:"leader"`
	Groups []struct {
		Name       string `json:"name"`
		ActiveSite string `json:"active_site"`
		Token      uint64 `json:"token"`
		Armed      bool   `json:"armed"`
	} `json:"groups"`
}

func ctlStatus(t *testing.T, ctl, admin string) devStatus {
	t.Helper()
	out, err := exec.Command(ctl, "--addr", admin, "status", "-o", "json").Output()
	if err != nil {
		t.Fatalf("witnessctl status: %v", err)
	}
	var st devStatus
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, out)
	}
	return st
}

func post(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
}

// TestDevContract drives `witnessd dev` as a newcomer would: the built
// binaries, a real DNS client (dig) and the CLI.
func TestDevContract(t *testing.T) {
	if _, err := exec.LookPath("dig"); err != nil {
		t.Fatal("dig is needed (bind9-dnsutils): run make deps")
	}
	witnessd, ctl := buildBinaries(t)
	admin := addrs(t, 3)
	dnsAddr, east, west := clustertest.FreeAddr(t), clustertest.FreeAddr(t), clustertest.FreeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, witnessd, "dev", "-admin-addrs", admin, "-metrics-addrs", addrs(t, 3),
		"-raft-addrs", addrs(t, 3), "-gossip-addrs", addrs(t, 3), "-dns-addr", dnsAddr, "-east-addr", east, "-west-addr", west)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Error("witnessd dev did not stop within 10s of SIGINT")
		}
		if t.Failed() {
			t.Logf("witnessd dev stderr:\n%s", stderr.String())
		}
	})
	// The guide is printed once everything runs.
	guide := bufio.NewScanner(stdout)
	sawGuide := false
	for guide.Scan() {
		if strings.Contains(guide.Text(), "dig @") {
			sawGuide = true
			break
		}
	}
	if !sawGuide {
		t.Fatalf("no guide printed; stderr:\n%s", stderr.String())
	}
	go func() {
		for guide.Scan() {
		}
	}()
	firstAdmin := strings.Split(admin, ",")[0]

	if got := dig(t, dnsAddr, "app.example.test", "A"); got != "192.0.2.10" {
		t.Fatalf("before: app.example.test A = %q, want 192.0.2.10", got)
	}
	// The first witness answers from its own replica, which may be a
	// moment behind the leader that applied the demo group.
	before := ctlStatus(t, ctl, firstAdmin)
	for deadline := time.Now().Add(10 * time.Second); len(before.Groups) == 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		before = ctlStatus(t, ctl, firstAdmin)
	}
	if len(before.Groups) != 1 || before.Groups[0].ActiveSite != "east" {
		t.Fatalf("before: status %+v", before)
	}
	// Wait until every witness sees both sites, as a user reading the
	// guide would take a moment anyway.
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, _ := exec.Command(ctl, "--addr", firstAdmin, "group", "app", "-o", "json").Output()
		if strings.Count(string(out), `"state": "healthy"`) >= 6 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}

	post(t, "http://"+east+"/down")
	start := time.Now()
	for dig(t, dnsAddr, "app.example.test", "A") != "198.51.100.10" {
		if time.Since(start) > 15*time.Second {
			t.Fatalf("DNS did not switch to west within 15s")
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("east down to DNS answering west: %v", time.Since(start).Round(10*time.Millisecond))
	after := ctlStatus(t, ctl, firstAdmin)
	g := after.Groups[0]
	if g.ActiveSite != "west" || g.Token != before.Groups[0].Token+1 || g.Armed {
		t.Fatalf("after: %+v, want west, token %d, disarmed", g, before.Groups[0].Token+1)
	}
	if txt := dig(t, dnsAddr, "_witness.app.example.test", "TXT"); txt != fmt.Sprintf(`"token=%d site=west"`, g.Token) {
		t.Errorf("fence TXT = %s, want token=%d site=west", txt, g.Token)
	}

	// East returns: nothing changes until an operator acts.
	post(t, "http://"+east+"/up")
	time.Sleep(8 * time.Second)
	if st := ctlStatus(t, ctl, firstAdmin); st.Groups[0].ActiveSite != "west" || st.Groups[0].Token != g.Token {
		t.Fatalf("east's return moved the group: %+v", st.Groups[0])
	}
	if got := dig(t, dnsAddr, "app.example.test", "A"); got != "198.51.100.10" {
		t.Errorf("after east returned: A = %q", got)
	}
}

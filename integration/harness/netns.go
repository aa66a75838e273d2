package harness

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Every namespace and link the harness makes starts with prefix, so that a
// run can find and remove what a crashed run left behind.
const (
	prefix   = "wh-"
	hubNS    = prefix + "hub"
	hostLink = prefix + "host"
	bridge   = "br0"
	subnet   = "10.231.0"
	hostIP   = subnet + ".1"
)

// netnsName is the network namespace of a site.
func netnsName(site string) string { return prefix + site }

// run runs a command to completion and returns its error with its output.
func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// ip runs ip(8) with args.
func ip(args ...string) error { return run("ip", args...) }

// inNS runs args inside the namespace ns.
func inNS(ns string, args ...string) error {
	return run("ip", append([]string{"netns", "exec", ns}, args...)...)
}

// teardownTimeout bounds how long removing the network may take: the
// kernel frees a deleted namespace's devices later, in a work queue that
// a loaded machine runs late.
const teardownTimeout = 2 * time.Minute

// Leftovers lists what of the harness's network is still there: after
// every environment was closed, nothing should be.
func Leftovers() ([]string, error) {
	namespaces, err := harnessNamespaces()
	var left []string
	if linkExists(hostLink) {
		left = append(left, "link "+hostLink)
	}
	for _, ns := range namespaces {
		left = append(left, "namespace "+ns)
	}
	return left, err
}

// harnessNamespaces lists the named namespaces that start with prefix.
func harnessNamespaces() ([]string, error) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return nil, fmt.Errorf("ip netns list: %w", err)
	}
	var namespaces []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], prefix) {
			namespaces = append(namespaces, f[0])
		}
	}
	return namespaces, nil
}

// linkExists reports whether the host's namespace has a link named name.
func linkExists(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// namespaceExists reports whether the named namespace ns is still mounted.
func namespaceExists(ns string) bool {
	_, err := os.Stat("/run/netns/" + ns)
	return err == nil
}

// RemoveLeftovers kills every process inside the harness's namespaces and
// deletes the host link and the namespaces. Something already gone is
// not an error (deleting a veth deletes its peer, and deleting a
// namespace deletes its veths, some time later); one removal that fails
// does not stop the others. It returns once nothing of the harness's
// network is left, or says what is.
func RemoveLeftovers() ([]string, error) {
	var (
		removed []string
		errs    []error
	)
	namespaces, err := harnessNamespaces()
	if err != nil {
		errs = append(errs, err)
	}
	// The host link first: it is the one thing of the harness in the
	// host's namespace, and the next run's subnet check looks for it.
	if linkExists(hostLink) {
		if err := ip("link", "del", hostLink); err != nil && linkExists(hostLink) {
			errs = append(errs, err)
		} else {
			removed = append(removed, "link "+hostLink)
		}
	}
	for _, ns := range namespaces {
		if err := killNamespace(ns); err != nil {
			errs = append(errs, err)
		}
		if err := ip("netns", "del", ns); err != nil && namespaceExists(ns) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, "namespace "+ns)
	}
	if err := waitFor(teardownTimeout, "the harness's network to be gone", func() error {
		left, err := Leftovers()
		if err != nil {
			return err
		}
		if len(left) > 0 {
			return fmt.Errorf("still there: %s", strings.Join(left, ", "))
		}
		return nil
	}); err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

// killNamespace SIGKILLs every process that lives in ns and waits until
// none is left (a process that has exited but not been reaped no longer
// counts).
func killNamespace(ns string) error {
	return waitFor(teardownTimeout, "the processes in "+ns+" to end", func() error {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			if !namespaceExists(ns) {
				return nil
			}
			return fmt.Errorf("ip netns pids %s: %w", ns, err)
		}
		var left []string
		for _, f := range strings.Fields(string(out)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil && pid > 1 {
				if err := unix.Kill(pid, unix.SIGKILL); err == nil {
					left = append(left, f)
				}
			}
		}
		if len(left) > 0 {
			return fmt.Errorf("still running: %s", strings.Join(left, " "))
		}
		return nil
	})
}

// checkSubnet refuses to build the network when the harness's subnet is
// already routed on this machine by something else.
func checkSubnet() error {
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").Output()
	if err != nil {
		return fmt.Errorf("ip route: %w", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, subnet+".") {
			return fmt.Errorf("the subnet %s.0/24 is already in use on this machine (%s); the harness needs it for its sites", subnet, strings.TrimSpace(line))
		}
	}
	return nil
}

// network is the hub namespace with its bridge, the host's link into it,
// and one namespace per site.
type network struct {
	sites map[string]string // site -> address
}

func newNetwork() *network { return &network{sites: map[string]string{}} }

// up makes the hub, its bridge and the host link.
func (n *network) up() error {
	if err := checkSubnet(); err != nil {
		return err
	}
	steps := [][]string{
		{"netns", "add", hubNS},
		{"-n", hubNS, "link", "set", "lo", "up"},
		{"-n", hubNS, "link", "add", bridge, "type", "bridge"},
		{"-n", hubNS, "link", "set", bridge, "up"},
		{"link", "add", hostLink, "type", "veth", "peer", "name", "v-host", "netns", hubNS},
		{"-n", hubNS, "link", "set", "v-host", "master", bridge, "up"},
		{"addr", "add", hostIP + "/24", "dev", hostLink},
		{"link", "set", hostLink, "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	return nil
}

// addSite makes site's namespace with address addr on the bridge.
func (n *network) addSite(site, addr string) error {
	ns, peer := netnsName(site), "v-"+site
	steps := [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", hubNS, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", ns},
		{"-n", hubNS, "link", "set", peer, "master", bridge, "up"},
		{"-n", ns, "addr", "add", addr + "/24", "dev", "eth0"},
		{"-n", ns, "link", "set", "eth0", "up"},
	}
	for _, s := range steps {
		if err := ip(s...); err != nil {
			return err
		}
	}
	n.sites[site] = addr
	return nil
}

// down removes everything up and addSite made, killing what runs inside.
func (n *network) down() error {
	_, err := RemoveLeftovers()
	return err
}

// listenIn opens a TCP listener inside namespace ns: the socket belongs to
// the namespace it was made in, whichever the process later runs in.
func listenIn(ns, addr string) (net.Listener, error) {
	var l net.Listener
	err := inNamespace(ns, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	return l, err
}

// dialIn opens a TCP connection from inside namespace ns.
func dialIn(ns, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := inNamespace(ns, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// inNamespace runs f on an OS thread that has entered namespace ns; the
// sockets f makes belong to ns.
func inNamespace(ns string, f func() error) error {
	var err error
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is left locked (and so ends with this goroutine)
		// unless it is back in its own namespace.
		self, ferr := os.Open("/proc/thread-self/ns/net")
		if ferr != nil {
			err = ferr
			return
		}
		defer self.Close()
		target, ferr := os.Open("/run/netns/" + ns)
		if ferr != nil {
			err = ferr
			return
		}
		defer target.Close()
		if err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			err = fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		err = f()
		if serr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); serr == nil {
			runtime.UnlockOSThread()
		}
	}()
	<-done
	return err
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// watchJSON is one line of `witnessctl watch -o json`: field names are a
// contract.
type watchJSON struct {
	At           time.Time       `json:"at"`
	Node         string          `json:"node"`
	Group        string          `json:"group"`
	Kind         string          `json:"kind"`
	Site         string          `json:"site,omitempty"`
	ObserverSite string          `json:"observer_site,omitempty"`
	State        string          `json:"state,omitempty"`
	Reason       string          `json:"reason,omitempty"`
	Transition   *transitionJSON `json:"transition,omitempty"`
	Step         *stepJSON       `json:"step,omitempty"`
}

// watch streams what a witness sees change, one line per event, until
// interrupted or the witness goes away.
func (c *cli) watch(args []string) error {
	pos, err := c.flags("watch", "watch [GROUP] [-o json]", args, nil, -1)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		fmt.Fprintln(c.stderr, "witnessctl watch: want at most one group")
		return errUsage
	}
	req := &witnessv1.WatchRequest{}
	if len(pos) == 1 {
		req.Group = pos[0]
	}
	cl, closeConn, err := c.client()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	stream, err := cl.Watch(ctx, req)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(c.stdout)
	for {
		e, err := stream.Recv()
		if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled && ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if c.g.output == "json" {
			if err := enc.Encode(toWatchJSON(e)); err != nil {
				return err
			}
			continue
		}
		fmt.Fprintln(c.stdout, watchLine(e))
	}
}

func toWatchJSON(e *witnessv1.WatchEvent) watchJSON {
	out := watchJSON{At: time.Unix(0, e.GetAtUnixNano()).UTC(), Node: e.GetNode(), Group: e.GetGroup(), Kind: e.GetKind(),
		Site: e.GetSite(), ObserverSite: e.GetObserverSite(), State: e.GetState(), Reason: e.GetReason()}
	if t := e.GetTransition(); t != nil {
		tj := toTransition(t)
		out.Transition = &tj
	}
	if r := e.GetStep(); r != nil {
		sj := toStep(r)
		out.Step = &sj
	}
	return out
}

// watchLine is an event as one line of text.
func watchLine(e *witnessv1.WatchEvent) string {
	at := time.Unix(0, e.GetAtUnixNano()).UTC().Format("2006-01-02T15:04:05.000Z")
	switch e.GetKind() {
	case "observation":
		return fmt.Sprintf("%s %s observation: %s seen from %s: %s", at, e.GetGroup(), e.GetSite(), e.GetObserverSite(), e.GetState())
	case "decision":
		return fmt.Sprintf("%s %s decision: %s: %s", at, e.GetGroup(), e.GetState(), e.GetReason())
	case "transition":
		t := toTransition(e.GetTransition())
		kind := t.Kind
		if t.Phase != "" {
			kind += " (" + t.Phase + ")"
		}
		return fmt.Sprintf("%s %s transition: %s %s -> %s, token %d, by %s: %s", at, e.GetGroup(), kind, dash(t.From), t.To, t.Token, dash(t.By), t.Reason)
	case "step":
		s := toStep(e.GetStep())
		return fmt.Sprintf("%s %s step: %s, token %d, attempt %d, %dms on %s: %s", at, e.GetGroup(), s.Step, s.Token, s.Attempt, s.DurationMS, dash(s.Node), stepResult(s))
	}
	return fmt.Sprintf("%s %s %s", at, e.GetGroup(), strings.TrimSpace(e.GetKind()))
}

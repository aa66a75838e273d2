package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// historyJSON is one transition of `witnessctl history -o json` with the
// step results recorded at its token: field names are a contract.
type historyJSON struct {
	transitionJSON
	Steps []stepJSON `json:"steps"`
}

// history lists a group's transitions, newest first, each with the steps
// run for its token (kept for the current token and the one before).
func (c *cli) history(args []string) error {
	pos, err := c.flags("history", "history GROUP [-o json]", args, nil, 1)
	if err != nil {
		return err
	}
	var resp *witnessv1.GetGroupResponse
	if err := c.call(func(ctx context.Context, cl witnessv1.AdminClient) (err error) {
		resp, err = cl.GetGroup(ctx, &witnessv1.GetGroupRequest{Name: pos[0]})
		return err
	}); err != nil {
		return err
	}
	d := toDetail(resp.GetGroup())
	out := []historyJSON{}
	for _, t := range slices.Backward(d.History) {
		h := historyJSON{transitionJSON: t, Steps: []stepJSON{}}
		for _, s := range d.Steps {
			if s.Token == t.Token {
				h.Steps = append(h.Steps, s)
			}
		}
		out = append(out, h)
	}
	if c.g.output == "json" {
		return c.printJSON(out)
	}
	for i, h := range out {
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		kind := h.Kind
		if h.Phase != "" {
			kind += " (" + h.Phase + ")"
		}
		fmt.Fprintf(c.stdout, "token %d  %s  %s %s -> %s  by %s\n  reason: %s\n", h.Token, h.At.Format(time.RFC3339), kind, dash(h.From), h.To, dash(h.By), h.Reason)
		if len(h.Steps) == 0 {
			continue
		}
		var rows [][]string
		for _, s := range h.Steps {
			rows = append(rows, []string{"  " + s.Step, strconv.Itoa(int(s.Attempt)), fmt.Sprintf("%dms", s.DurationMS), dash(s.Node), stepResult(s)})
		}
		c.table("  STEP\tATTEMPT\tTOOK\tNODE\tRESULT", rows)
		for _, s := range h.Steps {
			if s.Detail != "" {
				fmt.Fprintf(c.stdout, "  %s: %s\n", s.Step, s.Detail)
			}
		}
	}
	return nil
}

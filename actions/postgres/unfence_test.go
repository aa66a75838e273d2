package postgres_test

import (
	"testing"

	"github.com/sitewitness/witness/actions/postgres"
	"github.com/sitewitness/witness/integration/pgharness"
)

// TestUnfenceNeverPromotes lifts a self-fence on a fenced primary and on
// a fenced standby: the primary takes its application clients again, the
// standby stays in recovery (promoting it is the reconciler's job, under
// its promotion rule, never a lifted fence's).
func TestUnfenceNeverPromotes(t *testing.T) {
	primary := pgharness.StartPrimary(t)
	makeAppRoles(t, primary)
	east := &postgres.Client{Site: "east", Roles: []string{appRole}}
	west := &postgres.Client{Site: "west", Roles: []string{appRole}}
	if err := east.Promote(testContext(t), primary.DSN("postgres"), group, 3); err != nil {
		t.Fatal(err)
	}
	standby := pgharness.StartStandby(t, primary)
	standby.CatchUp(t, primary)

	t.Run("a fenced standby stays in recovery", func(t *testing.T) {
		if err := west.Fence(testContext(t), standby.DSN("postgres"), group, 3); err != nil {
			t.Fatal(err)
		}
		if err := west.Unfence(testContext(t), standby.DSN("postgres"), group, 3); err != nil {
			t.Fatal(err)
		}
		if st := status(t, standby.DSN("postgres")); !st.InRecovery {
			t.Errorf("unfence promoted the standby: %+v", st)
		}
	})

	t.Run("a fenced primary takes writes again", func(t *testing.T) {
		if err := east.Fence(testContext(t), primary.DSN("postgres"), group, 3); err != nil {
			t.Fatal(err)
		}
		if err := write(testContext(t), roleDSN(primary, appRole, nil), []string{"INSERT INTO items VALUES (1)"}); err == nil {
			t.Fatal("the fenced primary took a write")
		}
		if err := east.Unfence(testContext(t), primary.DSN("postgres"), group, 3); err != nil {
			t.Fatal(err)
		}
		if err := write(testContext(t), roleDSN(primary, appRole, nil), []string{"INSERT INTO items VALUES (2)"}); err != nil {
			t.Errorf("after unfence: %v", err)
		}
		if got, _ := status(t, primary.DSN("postgres")).Token(group); got != 3 {
			t.Errorf("token after unfence = %d, want 3", got)
		}
	})

	t.Run("a lower token is refused", func(t *testing.T) {
		wantHigher(t, east.Unfence(testContext(t), primary.DSN("postgres"), group, 2), 3, 2)
	})
}

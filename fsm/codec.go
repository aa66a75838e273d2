package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	witnessv1 "github.com/sitewitness/witness/proto/witness/v1"
)

// Type is the first byte of an entry and names its payload.
type Type byte

// Entry types. Values are part of the log format: never renumber.
const (
	TypePutGroups   Type = 1
	TypeDeleteGroup Type = 2
	TypeTransition  Type = 3
	TypeSetMode     Type = 4
	TypeSetArmed    Type = 5
	TypeRecordStep  Type = 6
	TypeProposal    Type = 7
	TypeSchedule    Type = 8
	TypeRecordSteps Type = 9
)

func (t Type) String() string {
	switch t {
	case TypePutGroups:
		return "put-groups"
	case TypeDeleteGroup:
		return "delete-group"
	case TypeTransition:
		return "transition"
	case TypeSetMode:
		return "set-mode"
	case TypeSetArmed:
		return "set-armed"
	case TypeRecordStep:
		return "record-step"
	case TypeProposal:
		return "record-proposal"
	case TypeSchedule:
		return "schedule-switchover"
	case TypeRecordSteps:
		return "record-steps"
	}
	return fmt.Sprintf("type(%d)", byte(t))
}

func newPayload(t Type) proto.Message {
	switch t {
	case TypePutGroups:
		return &witnessv1.PutGroupsCommand{}
	case TypeDeleteGroup:
		return &witnessv1.DeleteGroupCommand{}
	case TypeTransition:
		return &witnessv1.TransitionCommand{}
	case TypeSetMode:
		return &witnessv1.SetModeCommand{}
	case TypeSetArmed:
		return &witnessv1.SetArmedCommand{}
	case TypeRecordStep:
		return &witnessv1.RecordStepCommand{}
	case TypeProposal:
		return &witnessv1.RecordProposalCommand{}
	case TypeSchedule:
		return &witnessv1.ScheduleSwitchoverCommand{}
	case TypeRecordSteps:
		return &witnessv1.RecordStepsCommand{}
	}
	return nil
}

func typeOf(m proto.Message) (Type, bool) {
	switch m.(type) {
	case *witnessv1.PutGroupsCommand:
		return TypePutGroups, true
	case *witnessv1.DeleteGroupCommand:
		return TypeDeleteGroup, true
	case *witnessv1.TransitionCommand:
		return TypeTransition, true
	case *witnessv1.SetModeCommand:
		return TypeSetMode, true
	case *witnessv1.SetArmedCommand:
		return TypeSetArmed, true
	case *witnessv1.RecordStepCommand:
		return TypeRecordStep, true
	case *witnessv1.RecordProposalCommand:
		return TypeProposal, true
	case *witnessv1.ScheduleSwitchoverCommand:
		return TypeSchedule, true
	case *witnessv1.RecordStepsCommand:
		return TypeRecordSteps, true
	}
	return 0, false
}

// Encode returns the entry for a command: its type byte, then the command
// marshalled deterministically.
func Encode(cmd proto.Message) ([]byte, error) {
	t, ok := typeOf(cmd)
	if !ok {
		return nil, fmt.Errorf("encode %T: %w", cmd, ErrUnknownType)
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	return append([]byte{byte(t)}, b...), nil
}

// Decode parses an entry made by Encode.
func Decode(entry []byte) (Type, proto.Message, error) {
	if len(entry) == 0 {
		return 0, nil, fmt.Errorf("decode entry: %w", ErrEmptyEntry)
	}
	t := Type(entry[0])
	m := newPayload(t)
	if m == nil {
		return t, nil, fmt.Errorf("decode entry: %s: %w", t, ErrUnknownType)
	}
	if err := proto.Unmarshal(entry[1:], m); err != nil {
		return t, nil, fmt.Errorf("decode %s: %w", t, err)
	}
	return t, m, nil
}

package scheduler

import (
	"fmt"
	"strings"
)

// OpKind is what an Operation does to its range.
type OpKind int

const (
	// OpAddVoter adds a voter on To: a learner, then its promotion.
	OpAddVoter OpKind = iota
	// OpPromote promotes the learner on To (finishing an interrupted move).
	OpPromote
	// OpRemove removes the replica (voter or learner) on From, after moving
	// leadership to LeaderTo when From leads.
	OpRemove
	// OpMove moves the replica on From to To: leadership to LeaderTo first
	// when From leads, then a learner on To, its promotion, the removal of
	// From.
	OpMove
	// OpTransferLeader moves the range's leadership from From to To.
	OpTransferLeader
)

var opKindNames = [...]string{"add-voter", "promote", "remove", "move", "transfer-leader"}

func (k OpKind) String() string {
	if k >= 0 && int(k) < len(opKindNames) {
		return opKindNames[k]
	}
	return fmt.Sprintf("op(%d)", int(k))
}

// movesData reports whether the kind sends a snapshot.
func (k OpKind) movesData() bool { return k == OpAddVoter || k == OpMove }

// Reason says which goal an Operation serves; Schedule emits them in this
// order of priority.
type Reason int

const (
	// ReasonInterrupted finishes or rolls back a move left half done.
	ReasonInterrupted Reason = iota
	// ReasonDead replaces replicas on dead or removed nodes.
	ReasonDead
	// ReasonReplication meets the replication factor (3; 5 for meta).
	ReasonReplication
	// ReasonDraining moves leaders and replicas off draining nodes.
	ReasonDraining
	// ReasonCount balances replicas per node.
	ReasonCount
	// ReasonBytes balances bytes per node.
	ReasonBytes
	// ReasonLeaders balances leaders per node.
	ReasonLeaders
	// ReasonHot spreads the leaders of hot ranges.
	ReasonHot
)

var reasonNames = [...]string{"interrupted", "dead", "replication", "draining", "count", "bytes", "leaders", "hot"}

func (r Reason) String() string {
	if r >= 0 && int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", int(r))
}

// Repair reports whether the reason is a repair (as opposed to balance).
func (r Reason) Repair() bool { return r <= ReasonDraining }

// Operation is one change of one range's replicas or leadership.
type Operation struct {
	Kind  OpKind
	Range RangeID
	// Generation is the descriptor generation the operation was computed
	// against; the Mover refuses it once the range has changed.
	Generation uint64
	// From is the node a replica (or leadership) leaves, 0 if none.
	From NodeID
	// To is the node a replica (or leadership) goes to, 0 if none.
	To NodeID
	// LeaderTo, when set, is where leadership goes before From's replica is
	// removed (From leads the range).
	LeaderTo NodeID
	// Bytes is the size of the snapshot the operation sends (the range's
	// size), 0 if it sends none.
	Bytes  int64
	Reason Reason
}

func (o Operation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s r%d", o.Kind, uint64(o.Range))
	switch o.Kind {
	case OpAddVoter, OpPromote:
		fmt.Fprintf(&b, " on %s", o.To)
	case OpRemove:
		fmt.Fprintf(&b, " on %s", o.From)
	case OpMove, OpTransferLeader:
		fmt.Fprintf(&b, " %s->%s", o.From, o.To)
	}
	if o.LeaderTo != 0 {
		fmt.Fprintf(&b, " (leader to %s first)", o.LeaderTo)
	}
	fmt.Fprintf(&b, " [%s]", o.Reason)
	return b.String()
}

// StepKind is one primitive change, one ConfChangeV2 (or leader transfer)
// of the range.
type StepKind int

const (
	// StepAddLearner adds a learner and sends it a snapshot.
	StepAddLearner StepKind = iota
	// StepPromote promotes a learner to voter through joint consensus.
	StepPromote
	// StepRemove removes a replica.
	StepRemove
	// StepTransferLeader transfers leadership.
	StepTransferLeader
)

var stepKindNames = [...]string{"add-learner", "promote", "remove", "transfer-leader"}

func (k StepKind) String() string {
	if k >= 0 && int(k) < len(stepKindNames) {
		return stepKindNames[k]
	}
	return fmt.Sprintf("step(%d)", int(k))
}

// Step is one primitive of an Operation, applied to Node.
type Step struct {
	Kind StepKind
	Node NodeID
}

func (s Step) String() string { return fmt.Sprintf("%s %s", s.Kind, s.Node) }

// Steps returns the primitives of the operation in the order the executor
// runs them.
func (o Operation) Steps() []Step {
	var s []Step
	lead := func() {
		if o.LeaderTo != 0 {
			s = append(s, Step{StepTransferLeader, o.LeaderTo})
		}
	}
	switch o.Kind {
	case OpAddVoter:
		s = append(s, Step{StepAddLearner, o.To}, Step{StepPromote, o.To})
	case OpPromote:
		s = append(s, Step{StepPromote, o.To})
	case OpRemove:
		lead()
		s = append(s, Step{StepRemove, o.From})
	case OpMove:
		lead()
		s = append(s, Step{StepAddLearner, o.To}, Step{StepPromote, o.To}, Step{StepRemove, o.From})
	case OpTransferLeader:
		s = append(s, Step{StepTransferLeader, o.To})
	}
	return s
}

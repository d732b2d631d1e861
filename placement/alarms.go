package placement

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	etcdpb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/tesseradb/tessera/engine"
	"github.com/tesseradb/tessera/proto/tesserapb"
)

// Alarms are cluster state, as in etcd: a member raises one (NOSPACE when its
// disk fills up) and every node refuses what the alarm forbids until an
// operator disarms it. They are kept by the meta group, one system key per
// (member, alarm type), written by the apply of MetaCommand.alarm_request.

// alarmPrefix is the system key prefix of the active alarms.
const alarmPrefix = "meta/alarm/"

var alarmSpan = engine.SystemSpan(alarmPrefix)

type alarmID struct {
	member uint64
	alarm  etcdpb.AlarmType
}

func alarmKey(id alarmID) []byte {
	return engine.SystemKey(fmt.Sprintf("%s%016x/%d", alarmPrefix, id.member, id.alarm))
}

// loadAlarmsLocked reads the active alarms from the engine.
func (m *Meta) loadAlarmsLocked() error {
	it, err := m.eng.NewIter(alarmSpan)
	if err != nil {
		return fmt.Errorf("placement: read alarms: %w", err)
	}
	defer it.Close()
	alarms := make(map[alarmID]*etcdpb.AlarmMember)
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.Value()
		if err != nil {
			return fmt.Errorf("placement: read alarms: %w", err)
		}
		a := &etcdpb.AlarmMember{}
		if err := proto.Unmarshal(v, a); err != nil {
			return fmt.Errorf("placement: decode alarm %q: %w", it.Key(), err)
		}
		alarms[alarmID{a.GetMemberID(), a.GetAlarm()}] = a
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("placement: read alarms: %w", err)
	}
	m.mu.alarms = alarms
	return nil
}

// applyAlarmLocked applies an etcdserverpb.AlarmRequest as etcd's apply does:
// ACTIVATE records the alarm (once) and answers with it; DEACTIVATE removes
// it and answers with it, or with nothing when it was not active. GET
// requests never reach the log.
func (m *Meta) applyAlarmLocked(b *engine.Batch, raw []byte) ([]*etcdpb.AlarmMember, error) {
	req := &etcdpb.AlarmRequest{}
	if err := proto.Unmarshal(raw, req); err != nil {
		return nil, fmt.Errorf("decode alarm request: %w", err)
	}
	id := alarmID{req.GetMemberID(), req.GetAlarm()}
	switch req.GetAction() {
	case etcdpb.AlarmRequest_ACTIVATE:
		if id.alarm == etcdpb.AlarmType_NONE {
			return nil, nil
		}
		if a, ok := m.mu.alarms[id]; ok {
			return []*etcdpb.AlarmMember{a}, nil
		}
		a := &etcdpb.AlarmMember{MemberID: id.member, Alarm: id.alarm}
		v, err := proto.Marshal(a)
		if err != nil {
			return nil, err
		}
		if err := b.Set(alarmKey(id), v); err != nil {
			return nil, err
		}
		m.mu.alarms[id] = a
		m.log.Warn("alarm raised", "member", id.member, "alarm", id.alarm.String())
		return []*etcdpb.AlarmMember{a}, nil
	case etcdpb.AlarmRequest_DEACTIVATE:
		a, ok := m.mu.alarms[id]
		if !ok {
			return nil, nil
		}
		if err := b.Delete(alarmKey(id)); err != nil {
			return nil, err
		}
		delete(m.mu.alarms, id)
		m.log.Warn("alarm disarmed", "member", id.member, "alarm", id.alarm.String())
		return []*etcdpb.AlarmMember{a}, nil
	}
	return nil, nil
}

// Alarms returns the active alarms of type t (every type for NONE), as this
// replica has applied them, by member then type.
func (m *Meta) Alarms(t etcdpb.AlarmType) []*etcdpb.AlarmMember {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []*etcdpb.AlarmMember
	for id, a := range m.mu.alarms {
		if t == etcdpb.AlarmType_NONE || id.alarm == t {
			out = append(out, &etcdpb.AlarmMember{MemberID: a.GetMemberID(), Alarm: a.GetAlarm()})
		}
	}
	slices.SortFunc(out, func(a, b *etcdpb.AlarmMember) int {
		return cmp.Or(cmp.Compare(a.GetMemberID(), b.GetMemberID()), cmp.Compare(a.GetAlarm(), b.GetAlarm()))
	})
	return out
}

// Alarm runs an ACTIVATE or DEACTIVATE request through the meta group and
// returns the alarms it changed (etcd's AlarmResponse.alarms); a GET reads
// the applied state. Only the meta group's leader accepts proposals: on a
// follower it fails with a *raftgroup.NotLeaderError.
func (m *Meta) Alarm(ctx context.Context, req *etcdpb.AlarmRequest) ([]*etcdpb.AlarmMember, error) {
	if req.GetAction() == etcdpb.AlarmRequest_GET {
		return m.Alarms(req.GetAlarm()), nil
	}
	raw, err := proto.Marshal(req)
	if err != nil {
		return nil, err
	}
	res, err := m.propose(ctx, &tesserapb.MetaCommand{AlarmRequest: raw})
	if err != nil {
		return nil, fmt.Errorf("placement: alarm %s %s of member %d: %w", req.GetAction(), req.GetAlarm(), req.GetMemberID(), err)
	}
	return res.alarms, nil
}

package server

import (
	"github.com/tesseradb/tessera/cmd/buildinfo"
	"github.com/tesseradb/tessera/placement"
	"github.com/tesseradb/tessera/router"
)

// statusInfo fills etcdctl endpoint status beyond what the router knows:
// versions, the quota, and the raft state of the meta group's replica here.
func (s *Server) statusInfo() router.StatusInfo {
	in := router.StatusInfo{
		Version:        buildinfo.ServerVersion(),
		StorageVersion: buildinfo.StorageVersion,
		QuotaBytes:     s.quotaBytes(),
	}
	if s.meta != nil {
		if st, err := s.host.Status(placement.MetaRangeID); err == nil {
			in.RaftTerm, in.RaftIndex, in.RaftAppliedIndex = st.Term, st.Commit, st.Applied
		}
	}
	return in
}

// quotaBytes is the data size at which this node raises NOSPACE:
// --quota-backend-bytes when set (as etcd's QUOTA column), else the data
// dir's size plus the free space above --quota-free-bytes, else 0 (no
// limit).
func (s *Server) quotaBytes() int64 {
	if q := s.cfg.QuotaBackendBytes; q > 0 {
		return q
	}
	if s.cfg.QuotaFreeBytes <= 0 {
		return 0
	}
	u, err := measure(s.cfg.DataDir, true)
	if err != nil {
		s.log.Debug("quota", "err", err)
		return 0
	}
	return u.size + max(0, u.free-s.cfg.QuotaFreeBytes)
}

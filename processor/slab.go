package processor

import "github.com/twmb/franz-go/pkg/kgo"

// outSlab hands out the records the hot paths produce (changelog rows,
// window results) and their bytes from chunks allocated together: one
// allocation per slabRecords records, and per slabBytes bytes, instead of
// one per record and two per result. Nothing is handed out twice: a chunk
// is garbage once franz-go has let go of its last record (acknowledged at
// the next commit at the latest), so no record outlives a chunk's reuse,
// because chunks are never reused. An outSlab belongs to one goroutine.
type outSlab struct {
	recs []kgo.Record
	buf  []byte
}

const (
	slabRecords = 256
	slabBytes   = 64 << 10
)

// record returns a new zero record.
func (s *outSlab) record() *kgo.Record {
	if len(s.recs) == 0 {
		s.recs = make([]kgo.Record, slabRecords)
	}
	r := &s.recs[0]
	s.recs = s.recs[1:]
	return r
}

// start returns an empty slice to append up to about hint bytes to; keep
// ends it. Appending past its capacity moves it out of the chunk, which
// is safe: keep then leaves the chunk as it was.
func (s *outSlab) start(hint int) []byte {
	if cap(s.buf)-len(s.buf) < hint {
		s.buf = make([]byte, 0, max(slabBytes, hint))
	}
	return s.buf[len(s.buf):len(s.buf)]
}

// keep ends b, begun by start: the chunk's next bytes come after it, and
// b's capacity ends at its length, so nothing appended to b can reach
// them.
func (s *outSlab) keep(b []byte) []byte {
	if rest := s.buf[len(s.buf):cap(s.buf)]; cap(rest) > 0 && cap(b) == cap(rest) && len(b) > 0 && &b[0] == &rest[:1][0] {
		s.buf = s.buf[:len(s.buf)+len(b)]
	}
	return b[:len(b):len(b)]
}

// str copies src into the chunk.
func (s *outSlab) str(src string) []byte {
	return s.keep(append(s.start(len(src)), src...))
}

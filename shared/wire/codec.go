package wire

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"
)

// ContentType is the HTTP media type of an encoded batch (FORMAT.md).
const ContentType = "application/vnd.smartmaint.batch"

// FormatVersion is the batch format version this package writes and the
// only one it reads. It changes only for incompatible changes; fields are
// added within a version (FORMAT.md, "Versioning").
const FormatVersion = 1

// Limits (FORMAT.md, "Limits").
const (
	// MaxItems bounds readings + events + gaps in one batch. Edges send
	// about 1,000; the bound keeps a small hostile payload (one byte per
	// reading) from making the collector allocate gigabytes of structs.
	MaxItems = 100_000
	// DefaultMaxDecoded is the payload bound DecodeBatch uses when its
	// maxDecoded argument is not positive: MaxItems readings of a realistic
	// batch take about 2.5 MiB, so 16 MiB leaves room for long ids and
	// events without letting a zip bomb exhaust memory.
	DefaultMaxDecoded = 16 << 20
)

// Errors returned by DecodeBatch and EncodeBatch, always wrapped with
// detail (what is wrong, at which byte offset or item).
var (
	// ErrTooLarge: the batch exceeds maxDecoded or MaxItems. The
	// collector answers 413; the edge splits the batch.
	ErrTooLarge = errors.New("wire: batch too large")
	// ErrUnsupportedVersion: the body's format version or compression id
	// is not one this build reads. The collector answers 415 and the
	// edge can fall back to an older version.
	ErrUnsupportedVersion = errors.New("wire: unsupported batch format")
	// ErrCorrupt: the body is not a well-formed batch.
	ErrCorrupt = errors.New("wire: corrupt batch")
)

// Header layout (FORMAT.md, "Header").
const (
	magic0, magic1, magic2, magic3 = 0x89, 'S', 'M', 'B'
	headerFixed                    = 6 // magic (4) + version (1) + compression (1)

	compressionNone = 0
	compressionZstd = 1
)

// zstd tuning. Every policy value says why.
const (
	// encoderLevel: on a realistic batch "better" is 4% smaller than the
	// default level for under 2x its (tiny) encode time and decodes as
	// fast; "best" gains 5% more for 5x the time (FORMAT.md).
	encoderLevel = zstd.SpeedBetterCompression
	// encoderWindow: batches have their redundancy (sensor ids, timestamps)
	// within a few KiB; a 1 MiB window costs nothing in ratio and keeps
	// the decoder's memory per frame small.
	encoderWindow = 1 << 20
	// encoderConcurrency: one encoder state. At the "better" level each
	// costs ~6 MiB (a 4 MiB match table plus the window), kept for the life
	// of the process; the only caller, the edge forwarder, encodes a
	// 5,000-reading batch in ~2 ms per ~50 ms+ round trip, so a second
	// batch waiting for the one encoder costs no measurable throughput
	// while GOMAXPROCS encoders cost 6 MiB each on a 64 MiB edge box.
	encoderConcurrency = 1
	// decoderMaxWindow rejects frames that ask for more history than a
	// conforming encoder ever uses (with 8x leeway for other encoders).
	decoderMaxWindow = 8 << 20
	// decoderMaxMemory is an absolute ceiling independent of maxDecoded.
	decoderMaxMemory = 1 << 30
	// maxInterned bounds the per-scratch string intern table; maxInternLen
	// keeps one-off long strings out of it.
	maxInterned  = 4096
	maxInternLen = 256
	// maxPooledBuf: scratch buffers larger than this are not kept in the pool
	// so one huge batch does not pin memory.
	maxPooledBuf = 4 << 20
)

// Package-level state. The API is two plain functions, so what they reuse
// between calls has to live somewhere; these are the only package variables
// besides the sentinel errors:
//   - zstdEncoder / zstdDecoder are created once on first use and are then
//     immutable; their EncodeAll/DecodeAll are safe for concurrent use.
//   - scratchPool holds per-call buffers, dictionaries and an intern table;
//     a scratch is owned by exactly one call at a time.
var (
	zstdEncoder = sync.OnceValues(func() (*zstd.Encoder, error) {
		return zstd.NewWriter(nil,
			zstd.WithEncoderLevel(encoderLevel),
			zstd.WithWindowSize(encoderWindow),
			zstd.WithEncoderConcurrency(encoderConcurrency),
			zstd.WithEncoderCRC(true),
		)
	})
	zstdDecoder = sync.OnceValues(func() (*zstd.Decoder, error) {
		return zstd.NewReader(nil,
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderMaxMemory(decoderMaxMemory),
			zstd.WithDecoderMaxWindow(decoderMaxWindow),
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		)
	})
	scratchPool = sync.Pool{New: func() any { return new(scratch) }}
)

// Payload field numbers (FORMAT.md, "Payload").
const (
	fBatchEdgeID   protowire.Number = 1
	fBatchBatchID  protowire.Number = 2
	fBatchFirstSeq protowire.Number = 3
	fBatchLastSeq  protowire.Number = 4
	fBatchSentAt   protowire.Number = 5
	fBatchSensors  protowire.Number = 6
	fBatchModels   protowire.Number = 7
	fBatchReadings protowire.Number = 8
	fBatchEvents   protowire.Number = 9
	fBatchGaps     protowire.Number = 10

	// Reading columns, fields of the Readings message.
	colSensor  = 1
	colTime    = 2
	colValue   = 3
	colQuality = 4
	colFlags   = 5
	colSeq     = 6
	colScore   = 7
	colModel   = 8
	numCols    = 9 // index 0 unused

	fEvSensor      protowire.Number = 1
	fEvAsset       protowire.Number = 2
	fEvKind        protowire.Number = 3
	fEvState       protowire.Number = 4
	fEvSeverity    protowire.Number = 5
	fEvRule        protowire.Number = 6
	fEvTime        protowire.Number = 7
	fEvWindowStart protowire.Number = 8
	fEvWindowEnd   protowire.Number = 9
	fEvValue       protowire.Number = 10
	fEvScore       protowire.Number = 11
	fEvThreshold   protowire.Number = 12
	fEvModel       protowire.Number = 13
	fEvSeq         protowire.Number = 14

	fGapSensor protowire.Number = 1
	fGapFrom   protowire.Number = 2
	fGapTo     protowire.Number = 3
	fGapCount  protowire.Number = 4
	fGapReason protowire.Number = 5
	fGapSeq    protowire.Number = 6
)

// Constant tables of field names and wire types, for error messages.
var (
	colNames    = [numCols]string{"", "sensor", "time", "value", "quality", "flags", "seq", "score", "model"}
	eventFields = [...]fieldSpec{
		fEvSensor:      {"sensor", protowire.BytesType},
		fEvAsset:       {"asset", protowire.BytesType},
		fEvKind:        {"kind", protowire.VarintType},
		fEvState:       {"state", protowire.VarintType},
		fEvSeverity:    {"severity", protowire.VarintType},
		fEvRule:        {"rule", protowire.BytesType},
		fEvTime:        {"time", protowire.VarintType},
		fEvWindowStart: {"window_start", protowire.VarintType},
		fEvWindowEnd:   {"window_end", protowire.VarintType},
		fEvValue:       {"value", protowire.Fixed64Type},
		fEvScore:       {"score", protowire.Fixed32Type},
		fEvThreshold:   {"threshold", protowire.Fixed64Type},
		fEvModel:       {"model", protowire.BytesType},
		fEvSeq:         {"seq", protowire.VarintType},
	}
	gapFields = [...]fieldSpec{
		fGapSensor: {"sensor", protowire.BytesType},
		fGapFrom:   {"from", protowire.VarintType},
		fGapTo:     {"to", protowire.VarintType},
		fGapCount:  {"count", protowire.VarintType},
		fGapReason: {"reason", protowire.BytesType},
		fGapSeq:    {"seq", protowire.VarintType},
	}
)

type fieldSpec struct {
	name string
	typ  protowire.Type
}

// scratch is the reusable state of one encode or decode call.
type scratch struct {
	payload []byte
	cols    [numCols][]byte
	// encode dictionaries: string → index
	sensorIdx map[string]uint64
	modelIdx  map[string]uint64
	// decode dictionaries: index → string
	sensors []string
	models  []string
	intern  map[string]string
}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(s *scratch) {
	if cap(s.payload) > maxPooledBuf {
		s.payload = nil
	}
	for i := range s.cols {
		if cap(s.cols[i]) > maxPooledBuf {
			s.cols[i] = nil
		}
	}
	clear(s.sensors)
	clear(s.models)
	scratchPool.Put(s)
}

// EncodeBatch appends the encoded, compressed batch to dst (reusing its
// capacity) and returns the extended slice. It fails with ErrTooLarge when
// the batch has more than MaxItems items; it never modifies b.
func EncodeBatch(dst []byte, b *Batch) ([]byte, error) {
	return encodeBatch(dst, b, compressionZstd)
}

func encodeBatch(dst []byte, b *Batch, compression byte) ([]byte, error) {
	if n := len(b.Readings) + len(b.Events) + len(b.Gaps); n > MaxItems {
		return dst, fmt.Errorf("encode batch %q: %d items, limit %d: %w", b.BatchID, n, MaxItems, ErrTooLarge)
	}
	s := getScratch()
	defer putScratch(s)
	s.payload = appendPayload(s.payload[:0], b, s)

	dst = append(dst, magic0, magic1, magic2, magic3, FormatVersion, compression)
	dst = protowire.AppendVarint(dst, uint64(len(s.payload)))
	switch compression {
	case compressionNone:
		return append(dst, s.payload...), nil
	case compressionZstd:
		enc, err := zstdEncoder()
		if err != nil {
			return dst, fmt.Errorf("encode batch: create zstd encoder: %w", err)
		}
		return enc.EncodeAll(s.payload, dst), nil
	}
	return dst, fmt.Errorf("encode batch: compression id %d: %w", compression, ErrUnsupportedVersion)
}

// appendPayload appends the protobuf-compatible Batch message.
func appendPayload(p []byte, b *Batch, s *scratch) []byte {
	p = appendStringField(p, fBatchEdgeID, b.EdgeID)
	p = appendStringField(p, fBatchBatchID, b.BatchID)
	p = appendVarintField(p, fBatchFirstSeq, b.FirstSeq)
	p = appendVarintField(p, fBatchLastSeq, b.LastSeq)
	p = appendVarintField(p, fBatchSentAt, uint64(b.SentAt))

	if len(b.Readings) > 0 {
		if s.sensorIdx == nil {
			s.sensorIdx = make(map[string]uint64)
			s.modelIdx = make(map[string]uint64)
		}
		clear(s.sensorIdx)
		clear(s.modelIdx)
		for i := range s.cols {
			s.cols[i] = s.cols[i][:0]
		}
		var nonzero [numCols]bool
		var prevTime int64
		var prevSeq uint64
		for i := range b.Readings {
			r := &b.Readings[i]
			idx, ok := s.sensorIdx[r.Sensor]
			if !ok {
				idx = uint64(len(s.sensorIdx))
				s.sensorIdx[r.Sensor] = idx
				p = protowire.AppendTag(p, fBatchSensors, protowire.BytesType)
				p = protowire.AppendString(p, r.Sensor)
			}
			s.cols[colSensor] = protowire.AppendVarint(s.cols[colSensor], idx)

			// Deltas wrap in two's complement so any int64/uint64 round-trips.
			dt := protowire.EncodeZigZag(int64(uint64(r.Time) - uint64(prevTime)))
			prevTime = r.Time
			s.cols[colTime] = protowire.AppendVarint(s.cols[colTime], dt)
			nonzero[colTime] = nonzero[colTime] || dt != 0

			vb := math.Float64bits(r.Value)
			s.cols[colValue] = protowire.AppendFixed64(s.cols[colValue], vb)
			nonzero[colValue] = nonzero[colValue] || vb != 0

			s.cols[colQuality] = protowire.AppendVarint(s.cols[colQuality], uint64(r.Quality))
			nonzero[colQuality] = nonzero[colQuality] || r.Quality != 0

			s.cols[colFlags] = protowire.AppendVarint(s.cols[colFlags], uint64(r.Flags))
			nonzero[colFlags] = nonzero[colFlags] || r.Flags != 0

			ds := protowire.EncodeZigZag(int64(r.Seq - prevSeq))
			prevSeq = r.Seq
			s.cols[colSeq] = protowire.AppendVarint(s.cols[colSeq], ds)
			nonzero[colSeq] = nonzero[colSeq] || ds != 0

			sb := math.Float32bits(r.Score)
			s.cols[colScore] = protowire.AppendFixed32(s.cols[colScore], sb)
			nonzero[colScore] = nonzero[colScore] || sb != 0

			var m uint64
			if r.Model != "" {
				mi, ok := s.modelIdx[r.Model]
				if !ok {
					mi = uint64(len(s.modelIdx))
					s.modelIdx[r.Model] = mi
					p = protowire.AppendTag(p, fBatchModels, protowire.BytesType)
					p = protowire.AppendString(p, r.Model)
				}
				m = mi + 1
				nonzero[colModel] = true
			}
			s.cols[colModel] = protowire.AppendVarint(s.cols[colModel], m)
		}
		nonzero[colSensor] = true // the sensor column carries the count
		size := 0
		for c := 1; c < numCols; c++ {
			if nonzero[c] {
				size += protowire.SizeTag(protowire.Number(c)) + protowire.SizeBytes(len(s.cols[c]))
			}
		}
		p = protowire.AppendTag(p, fBatchReadings, protowire.BytesType)
		p = protowire.AppendVarint(p, uint64(size))
		for c := 1; c < numCols; c++ {
			if nonzero[c] {
				p = protowire.AppendTag(p, protowire.Number(c), protowire.BytesType)
				p = protowire.AppendBytes(p, s.cols[c])
			}
		}
	}

	for i := range b.Events {
		// Events are rare; encode into the tail of p, then move it right
		// by the length prefix.
		e := &b.Events[i]
		p = protowire.AppendTag(p, fBatchEvents, protowire.BytesType)
		start := len(p)
		p = appendStringField(p, fEvSensor, e.Sensor)
		p = appendStringField(p, fEvAsset, e.Asset)
		p = appendVarintField(p, fEvKind, uint64(e.Kind))
		p = appendVarintField(p, fEvState, uint64(e.State))
		p = appendVarintField(p, fEvSeverity, uint64(e.Severity))
		p = appendStringField(p, fEvRule, e.Rule)
		p = appendVarintField(p, fEvTime, uint64(e.Time))
		p = appendVarintField(p, fEvWindowStart, uint64(e.WindowStart))
		p = appendVarintField(p, fEvWindowEnd, uint64(e.WindowEnd))
		p = appendFixed64Field(p, fEvValue, math.Float64bits(e.Value))
		p = appendFixed32Field(p, fEvScore, math.Float32bits(e.Score))
		p = appendFixed64Field(p, fEvThreshold, math.Float64bits(e.Threshold))
		p = appendStringField(p, fEvModel, e.Model)
		p = appendVarintField(p, fEvSeq, e.Seq)
		p = insertLength(p, start)
	}
	for i := range b.Gaps {
		g := &b.Gaps[i]
		p = protowire.AppendTag(p, fBatchGaps, protowire.BytesType)
		start := len(p)
		p = appendStringField(p, fGapSensor, g.Sensor)
		p = appendVarintField(p, fGapFrom, uint64(g.From))
		p = appendVarintField(p, fGapTo, uint64(g.To))
		p = appendVarintField(p, fGapCount, g.Count)
		p = appendStringField(p, fGapReason, g.Reason)
		p = appendVarintField(p, fGapSeq, g.Seq)
		p = insertLength(p, start)
	}
	return p
}

// insertLength turns p[start:] into a length-delimited value by inserting
// its varint length at start.
func insertLength(p []byte, start int) []byte {
	n := len(p) - start
	k := protowire.SizeVarint(uint64(n))
	for range k {
		p = append(p, 0)
	}
	copy(p[start+k:], p[start:start+n])
	protowire.AppendVarint(p[start:start], uint64(n))
	return p
}

func appendStringField(p []byte, num protowire.Number, v string) []byte {
	if v == "" {
		return p
	}
	p = protowire.AppendTag(p, num, protowire.BytesType)
	return protowire.AppendString(p, v)
}

func appendVarintField(p []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return p
	}
	p = protowire.AppendTag(p, num, protowire.VarintType)
	return protowire.AppendVarint(p, v)
}

func appendFixed64Field(p []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return p
	}
	p = protowire.AppendTag(p, num, protowire.Fixed64Type)
	return protowire.AppendFixed64(p, v)
}

func appendFixed32Field(p []byte, num protowire.Number, v uint32) []byte {
	if v == 0 {
		return p
	}
	p = protowire.AppendTag(p, num, protowire.Fixed32Type)
	return protowire.AppendFixed32(p, v)
}

// DecodeBatch decodes a body produced by EncodeBatch into b, reusing b's
// slices; maxDecoded bounds the decompressed payload size (zip-bomb guard;
// not positive means DefaultMaxDecoded). It never panics. Errors wrap
// ErrTooLarge, ErrUnsupportedVersion or ErrCorrupt and say what is wrong
// and at which byte offset or item. On error b holds no useful data.
//
// Strings are not checked for UTF-8 and values not for finiteness: that is
// per-item validation for the receiver, so one bad reading does not cost
// the whole batch.
func DecodeBatch(body []byte, b *Batch, maxDecoded int) error {
	if maxDecoded <= 0 {
		maxDecoded = DefaultMaxDecoded
	}
	b.Reset()
	if len(body) < headerFixed {
		return fmt.Errorf("decode batch: body is %d bytes, shorter than the %d-byte header: %w", len(body), headerFixed, ErrCorrupt)
	}
	if body[0] != magic0 || body[1] != magic1 || body[2] != magic2 || body[3] != magic3 {
		return fmt.Errorf("decode batch: bytes 0-3 are % x, not the magic 89 53 4d 42 (not a smartmaint batch): %w", body[:4], ErrCorrupt)
	}
	if v := body[4]; v != FormatVersion {
		return fmt.Errorf("decode batch: format version %d at byte 4, this build reads version %d: %w", v, FormatVersion, ErrUnsupportedVersion)
	}
	comp := body[5]
	if comp != compressionNone && comp != compressionZstd {
		return fmt.Errorf("decode batch: compression id %d at byte 5, this build reads 0 (none) and 1 (zstd): %w", comp, ErrUnsupportedVersion)
	}
	declared, n := protowire.ConsumeVarint(body[headerFixed:])
	if n < 0 {
		return fmt.Errorf("decode batch: payload length at byte %d: %v: %w", headerFixed, protowire.ParseError(n), ErrCorrupt)
	}
	if declared > uint64(maxDecoded) {
		return fmt.Errorf("decode batch: payload length %d (byte %d) exceeds the limit of %d bytes: %w", declared, headerFixed, maxDecoded, ErrTooLarge)
	}
	dataOff := headerFixed + n
	data := body[dataOff:]

	s := getScratch()
	defer putScratch(s)
	var payload []byte
	switch comp {
	case compressionNone:
		if uint64(len(data)) != declared {
			return fmt.Errorf("decode batch: payload is %d bytes from byte %d, header declares %d: %w", len(data), dataOff, declared, ErrCorrupt)
		}
		payload = data
	case compressionZstd:
		dec, err := zstdDecoder()
		if err != nil {
			return fmt.Errorf("decode batch: create zstd decoder: %w", err)
		}
		if uint64(cap(s.payload)) < declared {
			s.payload = make([]byte, 0, declared)
		}
		// The capacity limit makes zstd stop at the declared size, so a
		// lying header cannot make it allocate more.
		out, err := dec.DecodeAll(data, s.payload[:0:declared])
		if err != nil {
			if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
				return fmt.Errorf("decode batch: zstd data from byte %d decompresses to more than the declared %d bytes: %w", dataOff, declared, ErrCorrupt)
			}
			return fmt.Errorf("decode batch: zstd data from byte %d: %v: %w", dataOff, err, ErrCorrupt)
		}
		if uint64(len(out)) != declared {
			return fmt.Errorf("decode batch: zstd data from byte %d decompresses to %d bytes, header declares %d: %w", dataOff, len(out), declared, ErrCorrupt)
		}
		payload = out
	}
	if err := s.decodePayload(payload, b); err != nil {
		b.Reset()
		return fmt.Errorf("decode batch: %w", err)
	}
	return nil
}

// corrupt formats a payload error; offsets are into the decompressed payload.
func corrupt(off int, format string, args ...any) error {
	return fmt.Errorf("payload byte %d: %s: %w", off, fmt.Sprintf(format, args...), ErrCorrupt)
}

// field is one parsed field of a message.
type field struct {
	num  protowire.Number
	typ  protowire.Type
	v    uint64 // varint, fixed32 or fixed64 value
	b    []byte // bytes value
	off  int    // payload offset of the tag
	voff int    // payload offset of the value (bytes: of its first byte)
}

// nextField parses the field at p[i:]; base is p's offset in the payload.
// It returns the field and the index after it.
func nextField(p []byte, i, base int) (field, int, error) {
	f := field{off: base + i}
	num, typ, n := protowire.ConsumeTag(p[i:])
	if n < 0 {
		return f, 0, corrupt(base+i, "field tag: %v", protowire.ParseError(n))
	}
	f.num, f.typ = num, typ
	i += n
	f.voff = base + i
	switch typ {
	case protowire.VarintType:
		f.v, n = protowire.ConsumeVarint(p[i:])
	case protowire.Fixed64Type:
		f.v, n = protowire.ConsumeFixed64(p[i:])
	case protowire.Fixed32Type:
		var v32 uint32
		v32, n = protowire.ConsumeFixed32(p[i:])
		f.v = uint64(v32)
	case protowire.BytesType:
		f.b, n = protowire.ConsumeBytes(p[i:])
		if n >= 0 {
			f.voff += n - len(f.b) // skip the length prefix
		}
	default:
		// Groups (deprecated in proto2, absent from proto3) are not part of
		// the format; rejecting them also avoids their nesting.
		return f, 0, corrupt(f.off, "field %d has wire type %d (group), which this format does not use", num, typ)
	}
	if n < 0 {
		return f, 0, corrupt(base+i, "value of field %d (wire type %d): %v", num, typ, protowire.ParseError(n))
	}
	return f, i + n, nil
}

func (f *field) want(t protowire.Type, msg, name string) error {
	if f.typ != t {
		return corrupt(f.off, "%s field %d (%s) has wire type %d, want %d", msg, f.num, name, f.typ, t)
	}
	return nil
}

// fits checks that a varint fits the Go field it decodes into.
func (f *field) fits(msg, name string, max uint64) error {
	if f.v > max {
		return corrupt(f.voff, "%s %s is %d, above %d", msg, name, f.v, max)
	}
	return nil
}

func (s *scratch) str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > maxInternLen {
		return string(b)
	}
	if v, ok := s.intern[string(b)]; ok {
		return v
	}
	if s.intern == nil || len(s.intern) >= maxInterned {
		s.intern = make(map[string]string, 64)
	}
	v := string(b)
	s.intern[v] = v
	return v
}

func (s *scratch) decodePayload(p []byte, b *Batch) error {
	s.sensors = s.sensors[:0]
	s.models = s.models[:0]
	var readings []byte
	readingsOff, readingsTag := -1, -1
	items := 0
	for i := 0; i < len(p); {
		f, next, err := nextField(p, i, 0)
		if err != nil {
			return err
		}
		i = next
		switch f.num {
		case fBatchEdgeID:
			if err := f.want(protowire.BytesType, "batch", "edge_id"); err != nil {
				return err
			}
			b.EdgeID = s.str(f.b)
		case fBatchBatchID:
			if err := f.want(protowire.BytesType, "batch", "batch_id"); err != nil {
				return err
			}
			b.BatchID = string(f.b)
		case fBatchFirstSeq:
			if err := f.want(protowire.VarintType, "batch", "first_seq"); err != nil {
				return err
			}
			b.FirstSeq = f.v
		case fBatchLastSeq:
			if err := f.want(protowire.VarintType, "batch", "last_seq"); err != nil {
				return err
			}
			b.LastSeq = f.v
		case fBatchSentAt:
			if err := f.want(protowire.VarintType, "batch", "sent_at"); err != nil {
				return err
			}
			b.SentAt = int64(f.v)
		case fBatchSensors:
			if err := f.want(protowire.BytesType, "batch", "sensors"); err != nil {
				return err
			}
			if len(s.sensors) >= MaxItems {
				return fmt.Errorf("payload byte %d: more than %d sensor dictionary entries: %w", f.off, MaxItems, ErrTooLarge)
			}
			s.sensors = append(s.sensors, s.str(f.b))
		case fBatchModels:
			if err := f.want(protowire.BytesType, "batch", "models"); err != nil {
				return err
			}
			if len(s.models) >= MaxItems {
				return fmt.Errorf("payload byte %d: more than %d model dictionary entries: %w", f.off, MaxItems, ErrTooLarge)
			}
			s.models = append(s.models, s.str(f.b))
		case fBatchReadings:
			if err := f.want(protowire.BytesType, "batch", "readings"); err != nil {
				return err
			}
			if readingsOff >= 0 {
				return corrupt(f.off, "second readings field (the first is at byte %d)", readingsTag)
			}
			readings, readingsOff, readingsTag = f.b, f.voff, f.off
		case fBatchEvents:
			if err := f.want(protowire.BytesType, "batch", "events"); err != nil {
				return err
			}
			if items++; items > MaxItems {
				return fmt.Errorf("payload byte %d: more than %d items: %w", f.off, MaxItems, ErrTooLarge)
			}
			b.Events = append(b.Events, Event{})
			if err := s.decodeEvent(f.b, f.voff, &b.Events[len(b.Events)-1]); err != nil {
				return fmt.Errorf("event %d: %w", len(b.Events)-1, err)
			}
		case fBatchGaps:
			if err := f.want(protowire.BytesType, "batch", "gaps"); err != nil {
				return err
			}
			if items++; items > MaxItems {
				return fmt.Errorf("payload byte %d: more than %d items: %w", f.off, MaxItems, ErrTooLarge)
			}
			b.Gaps = append(b.Gaps, Gap{})
			if err := s.decodeGap(f.b, f.voff, &b.Gaps[len(b.Gaps)-1]); err != nil {
				return fmt.Errorf("gap %d: %w", len(b.Gaps)-1, err)
			}
		default:
			// Unknown fields are skipped: newer encoders of the same
			// version may add fields (FORMAT.md, "Versioning").
		}
	}
	if readingsOff >= 0 {
		return s.decodeReadings(readings, readingsOff, b, MaxItems-items)
	}
	return nil
}

func (s *scratch) decodeReadings(p []byte, base int, b *Batch, maxReadings int) error {
	var cols [numCols][]byte
	var colOff [numCols]int
	var colTag [numCols]int
	var seen [numCols]bool
	for i := 0; i < len(p); {
		f, next, err := nextField(p, i, base)
		if err != nil {
			return fmt.Errorf("readings: %w", err)
		}
		i = next
		if f.num < colSensor || f.num >= numCols {
			continue // unknown column: skipped (FORMAT.md, "Versioning")
		}
		name := colNames[f.num]
		if err := f.want(protowire.BytesType, "readings", name); err != nil {
			return err
		}
		if seen[f.num] {
			return corrupt(f.off, "readings: second %s column (the first is at byte %d)", name, colTag[f.num])
		}
		cols[f.num], colOff[f.num], colTag[f.num], seen[f.num] = f.b, f.voff, f.off, true
	}
	// Every varint ends in a byte below 0x80, so this counts the values of
	// a well-formed column; the loop below checks well-formedness.
	n := 0
	for _, c := range cols[colSensor] {
		if c < 0x80 {
			n++
		}
	}
	if n > maxReadings {
		return fmt.Errorf("payload byte %d: %d readings, with events and gaps more than %d items: %w", colOff[colSensor], n, MaxItems, ErrTooLarge)
	}
	if c := cols[colValue]; seen[colValue] && len(c) != 8*n {
		return corrupt(colOff[colValue], "readings: value column is %d bytes, want %d for %d readings", len(c), 8*n, n)
	}
	if c := cols[colScore]; seen[colScore] && len(c) != 4*n {
		return corrupt(colOff[colScore], "readings: score column is %d bytes, want %d for %d readings", len(c), 4*n, n)
	}
	if cap(b.Readings) < n {
		b.Readings = make([]Reading, n)
	}
	b.Readings = b.Readings[:n]

	var pos [numCols]int // read position within each varint column
	varint := func(c, i int) (uint64, error) {
		col := cols[c]
		if !seen[c] {
			return 0, nil
		}
		if pos[c] >= len(col) {
			return 0, corrupt(colOff[c]+pos[c], "reading %d: %s column has only %d values, want %d", i, colNames[c], i, n)
		}
		v, k := protowire.ConsumeVarint(col[pos[c]:])
		if k < 0 {
			return 0, corrupt(colOff[c]+pos[c], "reading %d: %s column: %v", i, colNames[c], protowire.ParseError(k))
		}
		pos[c] += k
		return v, nil
	}
	var t int64
	var seq uint64
	for i := range n {
		r := &b.Readings[i]
		idx, err := varint(colSensor, i)
		if err != nil {
			return err
		}
		if idx >= uint64(len(s.sensors)) {
			return corrupt(colOff[colSensor]+pos[colSensor]-1, "reading %d: sensor index %d out of range (dictionary has %d entries)", i, idx, len(s.sensors))
		}
		dt, err := varint(colTime, i)
		if err != nil {
			return err
		}
		t = int64(uint64(t) + uint64(protowire.DecodeZigZag(dt)))
		q, err := varint(colQuality, i)
		if err != nil {
			return err
		}
		if q > math.MaxUint8 {
			return corrupt(colOff[colQuality]+pos[colQuality]-1, "reading %d: quality %d above %d", i, q, math.MaxUint8)
		}
		fl, err := varint(colFlags, i)
		if err != nil {
			return err
		}
		if fl > math.MaxUint16 {
			return corrupt(colOff[colFlags]+pos[colFlags]-1, "reading %d: flags %d above %d", i, fl, math.MaxUint16)
		}
		ds, err := varint(colSeq, i)
		if err != nil {
			return err
		}
		seq += uint64(protowire.DecodeZigZag(ds))
		m, err := varint(colModel, i)
		if err != nil {
			return err
		}
		model := ""
		if m > 0 {
			if m > uint64(len(s.models)) {
				return corrupt(colOff[colModel]+pos[colModel]-1, "reading %d: model index %d out of range (dictionary has %d entries)", i, m, len(s.models))
			}
			model = s.models[m-1]
		}
		var value float64
		if c := cols[colValue]; seen[colValue] {
			value = math.Float64frombits(leUint64(c[8*i:]))
		}
		var score float32
		if c := cols[colScore]; seen[colScore] {
			score = math.Float32frombits(leUint32(c[4*i:]))
		}
		*r = Reading{
			Sensor:  s.sensors[idx],
			Time:    t,
			Value:   value,
			Quality: Quality(q),
			Flags:   Flags(fl),
			Seq:     seq,
			Score:   score,
			Model:   model,
		}
	}
	for c := colSensor; c < numCols; c++ {
		if seen[c] && c != colValue && c != colScore && pos[c] != len(cols[c]) {
			if _, k := protowire.ConsumeVarint(cols[c][pos[c]:]); k < 0 {
				return corrupt(colOff[c]+pos[c], "readings: %s column, value %d: %v", colNames[c], n, protowire.ParseError(k))
			}
			return corrupt(colOff[c]+pos[c], "readings: %s column has more than %d values", colNames[c], n)
		}
	}
	return nil
}

func leUint64(b []byte) uint64 {
	_ = b[7]
	return uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24 |
		uint64(b[4])<<32 | uint64(b[5])<<40 | uint64(b[6])<<48 | uint64(b[7])<<56
}

func leUint32(b []byte) uint32 {
	_ = b[3]
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

func (s *scratch) decodeEvent(p []byte, base int, e *Event) error {
	for i := 0; i < len(p); {
		f, next, err := nextField(p, i, base)
		if err != nil {
			return err
		}
		i = next
		if f.num < 1 || int(f.num) >= len(eventFields) {
			continue // unknown field: skipped
		}
		name := eventFields[f.num].name
		if err := f.want(eventFields[f.num].typ, "event", name); err != nil {
			return err
		}
		switch f.num {
		case fEvSensor:
			e.Sensor = s.str(f.b)
		case fEvAsset:
			e.Asset = s.str(f.b)
		case fEvRule:
			e.Rule = s.str(f.b)
		case fEvModel:
			e.Model = s.str(f.b)
		case fEvKind, fEvState, fEvSeverity:
			if err := f.fits("event", name, math.MaxUint8); err != nil {
				return err
			}
			switch f.num {
			case fEvKind:
				e.Kind = EventKind(f.v)
			case fEvState:
				e.State = EventState(f.v)
			default:
				e.Severity = Severity(f.v)
			}
		case fEvTime:
			e.Time = int64(f.v)
		case fEvWindowStart:
			e.WindowStart = int64(f.v)
		case fEvWindowEnd:
			e.WindowEnd = int64(f.v)
		case fEvSeq:
			e.Seq = f.v
		case fEvValue:
			e.Value = math.Float64frombits(f.v)
		case fEvThreshold:
			e.Threshold = math.Float64frombits(f.v)
		case fEvScore:
			e.Score = math.Float32frombits(uint32(f.v))
		}
	}
	return nil
}

func (s *scratch) decodeGap(p []byte, base int, g *Gap) error {
	for i := 0; i < len(p); {
		f, next, err := nextField(p, i, base)
		if err != nil {
			return err
		}
		i = next
		if f.num < 1 || int(f.num) >= len(gapFields) {
			continue // unknown field: skipped
		}
		if err := f.want(gapFields[f.num].typ, "gap", gapFields[f.num].name); err != nil {
			return err
		}
		switch f.num {
		case fGapSensor:
			g.Sensor = s.str(f.b)
		case fGapReason:
			g.Reason = s.str(f.b)
		case fGapFrom:
			g.From = int64(f.v)
		case fGapTo:
			g.To = int64(f.v)
		case fGapCount:
			g.Count = f.v
		case fGapSeq:
			g.Seq = f.v
		}
	}
	return nil
}

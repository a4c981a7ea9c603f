package buffer

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"math"

	"github.com/smartmaint/smartmaint/shared/wire"
)

// Record types, the first byte of every stored value (FORMAT.md).
const (
	recReading byte = 1
	recEvent   byte = 2
	recGap     byte = 3
	recDead    byte = 4
)

// errBadRecord is returned by the decoders for a value that is truncated,
// has a wrong type byte or fails its checksum.
var errBadRecord = errors.New("corrupt record")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func seqKey(seq uint64) []byte {
	var k [8]byte
	binary.BigEndian.PutUint64(k[:], seq)
	return k[:]
}

func putKey(dst []byte, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(dst, seq)
}

func keySeq(k []byte) uint64 { return binary.BigEndian.Uint64(k) }

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

func appendF64(dst []byte, f float64) []byte {
	return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f))
}

func appendF32(dst []byte, f float32) []byte {
	return binary.LittleEndian.AppendUint32(dst, math.Float32bits(f))
}

func appendCRC(dst []byte, start int) []byte {
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// appendReading appends the stored form of r (without its Seq, which is the
// key) to dst.
func appendReading(dst []byte, r *wire.Reading) []byte {
	start := len(dst)
	dst = append(dst, recReading)
	dst = appendString(dst, r.Sensor)
	dst = binary.AppendVarint(dst, r.Time)
	dst = appendF64(dst, r.Value)
	dst = append(dst, byte(r.Quality))
	dst = binary.AppendUvarint(dst, uint64(r.Flags))
	dst = appendF32(dst, r.Score)
	dst = appendString(dst, r.Model)
	return appendCRC(dst, start)
}

func appendEvent(dst []byte, e *wire.Event) []byte {
	start := len(dst)
	dst = append(dst, recEvent)
	dst = appendString(dst, e.Sensor)
	dst = appendString(dst, e.Asset)
	dst = append(dst, byte(e.Kind), byte(e.State), byte(e.Severity))
	dst = appendString(dst, e.Rule)
	dst = binary.AppendVarint(dst, e.Time)
	dst = binary.AppendVarint(dst, e.WindowStart)
	dst = binary.AppendVarint(dst, e.WindowEnd)
	dst = appendF64(dst, e.Value)
	dst = appendF32(dst, e.Score)
	dst = appendF64(dst, e.Threshold)
	dst = appendString(dst, e.Model)
	return appendCRC(dst, start)
}

func appendGap(dst []byte, g *wire.Gap) []byte {
	start := len(dst)
	dst = append(dst, recGap)
	dst = appendString(dst, g.Sensor)
	dst = binary.AppendVarint(dst, g.From)
	dst = binary.AppendVarint(dst, g.To)
	dst = binary.AppendUvarint(dst, g.Count)
	dst = appendString(dst, g.Reason)
	return appendCRC(dst, start)
}

// deadRecord is a batch the collector refused, kept for inspection.
type deadRecord struct {
	At     int64  // edge time when it was dead-lettered (Unix ns)
	Reason string // the collector's answer
	Body   []byte // the encoded batch as sent
}

func appendDead(dst []byte, d *deadRecord) []byte {
	start := len(dst)
	dst = append(dst, recDead)
	dst = binary.AppendVarint(dst, d.At)
	dst = appendString(dst, d.Reason)
	dst = binary.AppendUvarint(dst, uint64(len(d.Body)))
	dst = append(dst, d.Body...)
	return appendCRC(dst, start)
}

// decoder reads fields of one stored value; the first failure sticks.
type decoder struct {
	b   []byte
	bad bool
}

// open checks the type byte and the checksum of v and returns a decoder
// positioned after the type byte.
func open(v []byte, typ byte) (decoder, bool) {
	if len(v) < 5 || v[0] != typ {
		return decoder{}, false
	}
	body := v[:len(v)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(v[len(v)-4:]) {
		return decoder{}, false
	}
	return decoder{b: body[1:]}, true
}

func (d *decoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) varint() int64 {
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	s := d.b[:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) u8() byte {
	if len(d.b) < 1 {
		d.bad = true
		return 0
	}
	x := d.b[0]
	d.b = d.b[1:]
	return x
}

func (d *decoder) f64() float64 {
	if len(d.b) < 8 {
		d.bad = true
		return 0
	}
	x := math.Float64frombits(binary.LittleEndian.Uint64(d.b))
	d.b = d.b[8:]
	return x
}

func (d *decoder) f32() float32 {
	if len(d.b) < 4 {
		d.bad = true
		return 0
	}
	x := math.Float32frombits(binary.LittleEndian.Uint32(d.b))
	d.b = d.b[4:]
	return x
}

func (d *decoder) done() bool { return !d.bad && len(d.b) == 0 }

func decodeReading(v []byte, r *wire.Reading) error {
	d, ok := open(v, recReading)
	if !ok {
		return errBadRecord
	}
	r.Sensor = d.str()
	r.Time = d.varint()
	r.Value = d.f64()
	r.Quality = wire.Quality(d.u8())
	r.Flags = wire.Flags(d.uvarint())
	r.Score = d.f32()
	r.Model = d.str()
	if !d.done() {
		return errBadRecord
	}
	return nil
}

// readingSensorTime decodes only what shedding needs, without allocating
// the model string.
func readingSensorTime(v []byte) (sensor []byte, t int64, err error) {
	d, ok := open(v, recReading)
	if !ok {
		return nil, 0, errBadRecord
	}
	sensor = d.bytes()
	t = d.varint()
	if d.bad {
		return nil, 0, errBadRecord
	}
	return sensor, t, nil
}

func decodeEvent(v []byte, e *wire.Event) error {
	d, ok := open(v, recEvent)
	if !ok {
		return errBadRecord
	}
	e.Sensor = d.str()
	e.Asset = d.str()
	e.Kind = wire.EventKind(d.u8())
	e.State = wire.EventState(d.u8())
	e.Severity = wire.Severity(d.u8())
	e.Rule = d.str()
	e.Time = d.varint()
	e.WindowStart = d.varint()
	e.WindowEnd = d.varint()
	e.Value = d.f64()
	e.Score = d.f32()
	e.Threshold = d.f64()
	e.Model = d.str()
	if !d.done() {
		return errBadRecord
	}
	return nil
}

func decodeGap(v []byte, g *wire.Gap) error {
	d, ok := open(v, recGap)
	if !ok {
		return errBadRecord
	}
	g.Sensor = d.str()
	g.From = d.varint()
	g.To = d.varint()
	g.Count = d.uvarint()
	g.Reason = d.str()
	if !d.done() {
		return errBadRecord
	}
	return nil
}

func decodeDead(v []byte, dr *deadRecord) error {
	d, ok := open(v, recDead)
	if !ok {
		return errBadRecord
	}
	dr.At = d.varint()
	dr.Reason = d.str()
	dr.Body = append([]byte(nil), d.bytes()...)
	if !d.done() {
		return errBadRecord
	}
	return nil
}

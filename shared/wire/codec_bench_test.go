package wire

// Benchmarks behind the format choice in FORMAT.md ("Measurements"). The
// losing candidates live only here so the figures can be reproduced:
//
//	go test -run '^$' -bench . -benchmem -count 6 ./shared/wire | benchstat -
//
// Every candidate encodes and decodes the same realistic batch of 1,000
// readings (realisticBatch) and reuses its compressor and buffers between
// iterations, as a long-running edge or collector would.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"math"
	"testing"

	"github.com/klauspost/compress/zstd"
	"google.golang.org/protobuf/encoding/protowire"
)

const benchReadings = 1000

// candidate is one encoding under comparison.
type candidate struct {
	name   string
	encode func(dst []byte, b *Batch) ([]byte, error)
	decode func(body []byte, b *Batch) error // nil: encode-only candidate
}

func candidates(tb testing.TB) []candidate {
	// (a) JSON + gzip: the obvious choice. Note it cannot carry NaN or
	// ±Inf at all, so the collector could not even see such values to
	// reject them per item.
	jgw, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
	var jgr gzip.Reader
	jbuf := new(bytes.Buffer)
	jsonGzip := candidate{
		name: "json+gzip",
		encode: func(dst []byte, b *Batch) ([]byte, error) {
			out := bytes.NewBuffer(dst)
			jgw.Reset(out)
			if err := json.NewEncoder(jgw).Encode(b); err != nil {
				return nil, err
			}
			err := jgw.Close()
			return out.Bytes(), err
		},
		decode: func(body []byte, b *Batch) error {
			if err := jgr.Reset(bytes.NewReader(body)); err != nil {
				return err
			}
			jbuf.Reset()
			if _, err := jbuf.ReadFrom(&jgr); err != nil {
				return err
			}
			b.Reset()
			return json.Unmarshal(jbuf.Bytes(), b)
		},
	}

	// (b) the chosen protobuf-compatible payload + gzip.
	s := new(scratch)
	pgw, _ := gzip.NewWriterLevel(io.Discard, gzip.DefaultCompression)
	var pgr gzip.Reader
	pbuf := new(bytes.Buffer)
	protoGzip := candidate{
		name: "proto+gzip",
		encode: func(dst []byte, b *Batch) ([]byte, error) {
			s.payload = appendPayload(s.payload[:0], b, s)
			out := bytes.NewBuffer(dst)
			pgw.Reset(out)
			if _, err := pgw.Write(s.payload); err != nil {
				return nil, err
			}
			err := pgw.Close()
			return out.Bytes(), err
		},
		decode: func(body []byte, b *Batch) error {
			if err := pgr.Reset(bytes.NewReader(body)); err != nil {
				return err
			}
			pbuf.Reset()
			if _, err := pbuf.ReadFrom(&pgr); err != nil {
				return err
			}
			b.Reset()
			return s.decodePayload(pbuf.Bytes(), b)
		},
	}

	// (c) the same + zstd: the production EncodeBatch/DecodeBatch.
	protoZstd := candidate{
		name:   "proto+zstd (chosen)",
		encode: EncodeBatch,
		decode: func(body []byte, b *Batch) error { return DecodeBatch(body, b, DefaultMaxDecoded) },
	}

	// (c') the same at zstd's other levels, to show what the chosen level
	// buys.
	zstdLevel := func(level zstd.EncoderLevel) candidate {
		enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(encoderWindow))
		if err != nil {
			tb.Fatal(err)
		}
		return candidate{
			name: "proto+zstd-" + level.String(),
			encode: func(dst []byte, b *Batch) ([]byte, error) {
				s.payload = appendPayload(s.payload[:0], b, s)
				dst = append(dst, magic0, magic1, magic2, magic3, FormatVersion, compressionZstd)
				dst = protowire.AppendVarint(dst, uint64(len(s.payload)))
				return enc.EncodeAll(s.payload, dst), nil
			},
			decode: func(body []byte, b *Batch) error { return DecodeBatch(body, b, DefaultMaxDecoded) },
		}
	}

	// (d) the payload uncompressed, to show what compression buys.
	protoRaw := candidate{
		name:   "proto (uncompressed)",
		encode: func(dst []byte, b *Batch) ([]byte, error) { return encodeBatch(dst, b, compressionNone) },
		decode: func(body []byte, b *Batch) error { return DecodeBatch(body, b, DefaultMaxDecoded) },
	}

	// (e) plain row-per-reading protobuf (what protoc would give for a
	// "repeated Reading" message: sensor id in every row, absolute times)
	// + zstd, to show what the dictionary and columns buy. Encode only.
	zs, err := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	if err != nil {
		tb.Fatal(err)
	}
	var rows []byte
	protoRowsZstd := candidate{
		name: "proto rows+zstd",
		encode: func(dst []byte, b *Batch) ([]byte, error) {
			rows = appendRows(rows[:0], b)
			return zs.EncodeAll(rows, dst), nil
		},
	}
	return []candidate{jsonGzip, protoGzip, protoZstd, zstdLevel(zstd.SpeedFastest), zstdLevel(zstd.SpeedDefault),
		zstdLevel(zstd.SpeedBestCompression), protoRaw, protoRowsZstd}
}

// appendRows is the naive row-wise protobuf layout of candidate (e).
func appendRows(p []byte, b *Batch) []byte {
	p = appendStringField(p, 1, b.EdgeID)
	p = appendStringField(p, 2, b.BatchID)
	p = appendVarintField(p, 3, b.FirstSeq)
	p = appendVarintField(p, 4, b.LastSeq)
	p = appendVarintField(p, 5, uint64(b.SentAt))
	for i := range b.Readings {
		r := &b.Readings[i]
		p = protowire.AppendTag(p, 6, protowire.BytesType)
		start := len(p)
		p = appendStringField(p, 1, r.Sensor)
		p = appendVarintField(p, 2, uint64(r.Time))
		p = appendFixed64Field(p, 3, math.Float64bits(r.Value))
		p = appendVarintField(p, 4, uint64(r.Quality))
		p = appendVarintField(p, 5, uint64(r.Flags))
		p = appendVarintField(p, 6, r.Seq)
		p = appendFixed32Field(p, 7, math.Float32bits(r.Score))
		p = appendStringField(p, 8, r.Model)
		p = insertLength(p, start)
	}
	return p
}

func BenchmarkEncode(b *testing.B) {
	batch := realisticBatch(1, benchReadings)
	for _, c := range candidates(b) {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			var err error
			cpu := processCPU()
			for b.Loop() {
				if buf, err = c.encode(buf[:0], batch); err != nil {
					b.Fatal(err)
				}
			}
			reportPerReading(b, cpu, len(buf))
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	batch := realisticBatch(1, benchReadings)
	for _, c := range candidates(b) {
		if c.decode == nil {
			continue
		}
		b.Run(c.name, func(b *testing.B) {
			body, err := c.encode(nil, batch)
			if err != nil {
				b.Fatal(err)
			}
			var got Batch
			if err := c.decode(body, &got); err != nil { // warm up: slices sized
				b.Fatal(err)
			}
			if d := batchDiff(batch, &got); d != "" {
				b.Fatalf("%s does not round-trip (-want +got):\n%s", c.name, d)
			}
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				if err := c.decode(body, &got); err != nil {
					b.Fatal(err)
				}
			}
			reportPerReading(b, cpu, len(body))
		})
	}
}

// reportPerReading adds the batch size and wall and CPU time per reading.
func reportPerReading(b *testing.B, cpuStart int64, size int) {
	cpu := processCPU() - cpuStart
	b.ReportMetric(float64(size), "bytes/batch")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/benchReadings, "ns/reading")
	b.ReportMetric(float64(cpu)/float64(b.N)/benchReadings, "cpu-ns/reading")
}

// BenchmarkDecodeParallel shows DecodeBatch under concurrent requests, as
// in the collector (shared zstd decoder, pooled scratch).
func BenchmarkDecodeParallel(b *testing.B) {
	body, err := EncodeBatch(nil, realisticBatch(1, benchReadings))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var got Batch
		for pb.Next() {
			if err := DecodeBatch(body, &got, DefaultMaxDecoded); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

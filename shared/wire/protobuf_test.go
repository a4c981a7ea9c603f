package wire

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
)

// TestPayloadIsProtobuf checks the claim of FORMAT.md that the payload is
// a protobuf message with the schema given there: a generic protobuf
// library, given that schema, reads the same values.
func TestPayloadIsProtobuf(t *testing.T) {
	t.Parallel()
	b := realisticBatch(12, 200)
	payload := appendPayload(nil, b, new(scratch))

	md := formatSchema(t).Messages().ByName("Batch")
	m := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(payload, m); err != nil {
		t.Fatalf("protobuf cannot parse the payload: %v", err)
	}
	get := func(m protoreflect.Message, name string) protoreflect.Value {
		return m.Get(m.Descriptor().Fields().ByName(protoreflect.Name(name)))
	}
	if got := get(m, "edge_id").String(); got != b.EdgeID {
		t.Errorf("edge_id = %q, want %q", got, b.EdgeID)
	}
	if got := get(m, "first_seq").Uint(); got != b.FirstSeq {
		t.Errorf("first_seq = %d, want %d", got, b.FirstSeq)
	}
	if got := get(m, "sent_at").Int(); got != b.SentAt {
		t.Errorf("sent_at = %d, want %d", got, b.SentAt)
	}

	// Rebuild the readings from the generic view, following FORMAT.md.
	sensors := get(m, "sensors").List()
	models := get(m, "models").List()
	rd := get(m, "readings").Message()
	col := func(name string) protoreflect.List { return get(rd, name).List() }
	var got []Reading
	var tm int64
	var seq uint64
	for i := range col("sensor").Len() {
		tm += col("time").Get(i).Int()
		seq += uint64(col("seq").Get(i).Int())
		r := Reading{
			Sensor: sensors.Get(int(col("sensor").Get(i).Uint())).String(),
			Time:   tm,
			Value:  col("value").Get(i).Float(),
			Seq:    seq,
			Score:  float32(col("score").Get(i).Float()),
		}
		if l := col("quality"); l.Len() > 0 {
			r.Quality = Quality(l.Get(i).Uint())
		}
		if l := col("flags"); l.Len() > 0 {
			r.Flags = Flags(l.Get(i).Uint())
		}
		if k := col("model").Get(i).Uint(); k > 0 {
			r.Model = models.Get(int(k - 1)).String()
		}
		got = append(got, r)
	}
	if d := cmp.Diff(b.Readings, got); d != "" {
		t.Errorf("readings read by protobuf differ (-want +got):\n%s", d)
	}
	events := get(m, "events").List()
	if events.Len() != len(b.Events) {
		t.Fatalf("%d events, want %d", events.Len(), len(b.Events))
	}
	for i, e := range b.Events {
		ev := events.Get(i).Message()
		if get(ev, "rule").String() != e.Rule || get(ev, "threshold").Float() != e.Threshold ||
			Severity(get(ev, "severity").Uint()) != e.Severity || get(ev, "window_start").Int() != e.WindowStart {
			t.Errorf("event %d read by protobuf differs from %+v", i, e)
		}
	}
	gaps := get(m, "gaps").List()
	for i, g := range b.Gaps {
		gp := gaps.Get(i).Message()
		if get(gp, "reason").String() != g.Reason || get(gp, "from").Int() != g.From || get(gp, "seq").Uint() != g.Seq {
			t.Errorf("gap %d read by protobuf differs from %+v", i, g)
		}
	}

	// And the other way: what protobuf writes, DecodeBatch reads.
	again, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back Batch
	if err := DecodeBatch(raw(again), &back, 0); err != nil {
		t.Fatalf("DecodeBatch of protobuf's own encoding: %v", err)
	}
	if !batchEqual(b, &back) {
		t.Errorf("protobuf re-encoding decodes differently (-want +got):\n%s", batchDiff(b, &back))
	}
}

// formatSchema is the .proto schema of FORMAT.md as a descriptor.
func formatSchema(t *testing.T) protoreflect.FileDescriptor {
	t.Helper()
	type f struct {
		name string
		num  int32
		typ  descriptorpb.FieldDescriptorProto_Type
		rep  bool
		msg  string
	}
	const (
		str    = descriptorpb.FieldDescriptorProto_TYPE_STRING
		u64    = descriptorpb.FieldDescriptorProto_TYPE_UINT64
		u32    = descriptorpb.FieldDescriptorProto_TYPE_UINT32
		i64    = descriptorpb.FieldDescriptorProto_TYPE_INT64
		s64    = descriptorpb.FieldDescriptorProto_TYPE_SINT64
		dbl    = descriptorpb.FieldDescriptorProto_TYPE_DOUBLE
		flt    = descriptorpb.FieldDescriptorProto_TYPE_FLOAT
		msgTyp = descriptorpb.FieldDescriptorProto_TYPE_MESSAGE
	)
	message := func(name string, fields ...f) *descriptorpb.DescriptorProto {
		d := &descriptorpb.DescriptorProto{Name: proto.String(name)}
		for _, x := range fields {
			label := descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL
			if x.rep {
				label = descriptorpb.FieldDescriptorProto_LABEL_REPEATED
			}
			fd := &descriptorpb.FieldDescriptorProto{
				Name: proto.String(x.name), JsonName: proto.String(x.name), Number: proto.Int32(x.num),
				Type: x.typ.Enum(), Label: label.Enum(),
			}
			if x.msg != "" {
				fd.TypeName = proto.String(".smartmaint.wire.v1." + x.msg)
			}
			d.Field = append(d.Field, fd)
		}
		return d
	}
	file := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("smartmaint/wire/v1/batch.proto"),
		Package: proto.String("smartmaint.wire.v1"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{
			message("Batch",
				f{"edge_id", 1, str, false, ""}, f{"batch_id", 2, str, false, ""},
				f{"first_seq", 3, u64, false, ""}, f{"last_seq", 4, u64, false, ""},
				f{"sent_at", 5, i64, false, ""},
				f{"sensors", 6, str, true, ""}, f{"models", 7, str, true, ""},
				f{"readings", 8, msgTyp, false, "Readings"},
				f{"events", 9, msgTyp, true, "Event"}, f{"gaps", 10, msgTyp, true, "Gap"}),
			message("Readings",
				f{"sensor", 1, u32, true, ""}, f{"time", 2, s64, true, ""}, f{"value", 3, dbl, true, ""},
				f{"quality", 4, u32, true, ""}, f{"flags", 5, u32, true, ""}, f{"seq", 6, s64, true, ""},
				f{"score", 7, flt, true, ""}, f{"model", 8, u32, true, ""}),
			message("Event",
				f{"sensor", 1, str, false, ""}, f{"asset", 2, str, false, ""},
				f{"kind", 3, u32, false, ""}, f{"state", 4, u32, false, ""}, f{"severity", 5, u32, false, ""},
				f{"rule", 6, str, false, ""}, f{"time", 7, i64, false, ""},
				f{"window_start", 8, i64, false, ""}, f{"window_end", 9, i64, false, ""},
				f{"value", 10, dbl, false, ""}, f{"score", 11, flt, false, ""}, f{"threshold", 12, dbl, false, ""},
				f{"model", 13, str, false, ""}, f{"seq", 14, u64, false, ""}),
			message("Gap",
				f{"sensor", 1, str, false, ""}, f{"from", 2, i64, false, ""}, f{"to", 3, i64, false, ""},
				f{"count", 4, u64, false, ""}, f{"reason", 5, str, false, ""}, f{"seq", 6, u64, false, ""}),
		},
	}
	fd, err := protodesc.NewFile(file, nil)
	if err != nil {
		t.Fatalf("schema: %v", err)
	}
	return fd
}
